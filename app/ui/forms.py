"""The data set page's job forms as the API's job requests: one form per job type
(select, evaluate, curve, align), each posted as strings and mapped here to the request
``POST /v1/jobs`` takes. The mapping only reshapes: a field left blank is left out (the
API's default applies) and every value goes to the contract's models as typed, so the
rules and messages are the API's own (``parse_job_request``, then ``create_job``). Only
what a plain form cannot say in JSON is read here: ``name=value`` lines, lists separated
by commas, and the budget's ``5%`` shorthand (``Budget.parse``, as the CLI reads it)."""

from __future__ import annotations

import dataclasses
import json
import re
import shlex
from collections.abc import Mapping
from functools import cache
from typing import Any, get_args

from pydantic import ValidationError

from isa.align.config import AlignConfig
from isa.embed.factory import ENCODERS
from isa.remote.contract import (
    CurveJob,
    EvaluateJob,
    Level,
    Queue,
    SelectJob,
    Template,
    parse_job_request,
)
from isa.select.budget import Budget

JOB_FORMS = ("select", "evaluate", "curve", "align")
#: the inputs every job on a data set has (the encoder, the seed) and every job has
_ON_DATASET = ("seed", "encoder_name", "encoder_model", "max_seq_length")
_ANY_JOB = ("queue", "metadata")
_EVALUATION = ("eval_dataset_id", "eval_fraction", "seeds")
#: the align run's own settings, by their AlignConfig names
ALIGN_FIELDS = tuple(f.name for f in dataclasses.fields(AlignConfig))
#: each form's inputs (their ``name``), as the page posts them
FIELDS: dict[str, tuple[str, ...]] = {
    "select": ("method", "params", "budget", "level", "template", *_ON_DATASET, *_ANY_JOB),
    "evaluate": ("method", "params", "budget", *_EVALUATION, *_ON_DATASET, *_ANY_JOB),
    "curve": ("methods", "budgets_percent", "share", "metric", *_EVALUATION, *_ON_DATASET,
              *_ANY_JOB),
    "align": ("select_job_id", "eval_dataset_id", *ALIGN_FIELDS, *_ANY_JOB),
}
#: inputs of several lines (textareas), longer than the others
#: inputs that are the request's own fields, as they are
_TOP_LEVEL = ("seed", "level", "template", "eval_dataset_id", "eval_fraction", "seeds",
              "share", "metric", "queue")
MULTILINE = frozenset({"params", "methods", "metadata"})
SHORT_CHARS, LONG_CHARS = 300, 4000


#: what a form holds when the page opens (blank inputs show the API's defaults instead)
INITIAL: dict[str, dict[str, str]] = {"select": {"method": "isa", "budget": "5%"},
                                      "evaluate": {"method": "isa", "budget": "25%"}}
#: the inputs offered as a list of choices: the contract's own values
CHOICES: dict[str, tuple[str, ...]] = {
    "level": get_args(Level), "template": get_args(Template), "queue": get_args(Queue),
    "encoder_name": tuple(ENCODERS),
    "metric": get_args(CurveJob.model_fields["metric"].annotation),
    "align_method": get_args(AlignConfig.__pydantic_fields__["method"].annotation),
}


class FormError(ValueError):
    """What the form says cannot be read as a request (a line that is not ``name=value``)."""


def read_form(data: Mapping[str, Any]) -> tuple[str, dict[str, str]]:
    """The posted form's job type (``type``; select when left out, as the first form
    posted none) and its own inputs as trimmed strings, each of bounded length; unknown
    inputs are dropped. ``FormError`` for a type the page does not have."""
    kind = str(data.get("type") or "select")
    if kind not in FIELDS:
        raise FormError(f"unknown job type {kind[:40]!r}; the page has "
                        f"{', '.join(JOB_FORMS)}")
    form = {}
    for name in FIELDS[kind]:
        value = data.get(name)
        text = value.strip() if isinstance(value, str) else ""
        form[name] = text[:LONG_CHARS if name in MULTILINE else SHORT_CHARS]
    return kind, form


def job_request(kind: str, dataset_id: str, form: Mapping[str, str]) -> Any:
    """The form of job type ``kind`` on data set ``dataset_id`` as the API's typed job
    request. Raises pydantic's ``ValidationError`` (the API's 422s), ``ConfigError`` (a
    budget the library cannot read) or ``FormError``."""
    return parse_job_request(request_dict(kind, dataset_id, form))


def request_dict(kind: str, dataset_id: str, form: Mapping[str, str]) -> dict[str, Any]:
    """The JSON body the form stands for (before the contract's validation)."""
    f = {k: v for k, v in form.items() if v}  # blank: the API's default
    out: dict[str, Any] = {"type": kind}
    if kind == "align":
        out["select_job_id" if f.get("select_job_id") else "dataset_id"] = (
            f.get("select_job_id") or dataset_id)
        align = {name: f[name] for name in ALIGN_FIELDS if name in f}
        for name in ("lora", "gradient_checkpointing"):  # the page's yes/no choices
            if name in align:
                align[name] = {"yes": True, "no": False}.get(align[name], align[name])
        if "target_modules" in align:
            align["target_modules"] = _items(align["target_modules"])
        out["align"] = align
    else:
        out["dataset_id"] = dataset_id
        encoder = {k: f[field] for k, field in (("name", "encoder_name"), (
            "model", "encoder_model"), ("max_seq_length", "max_seq_length")) if field in f}
        if encoder:
            out["encoder"] = encoder
    if kind in ("select", "evaluate"):
        out["method"] = f.get("method", "isa")
        out["params"] = params(out["method"], f.get("params", ""))
        if "budget" in f:
            out["budget"] = Budget.parse(f["budget"]).to_dict()
    if kind == "curve":
        if "methods" in f:
            out["methods"] = method_lines(f["methods"])
        if "budgets_percent" in f:
            out["budgets_percent"] = [b.removesuffix("%") for b in _items(
                f["budgets_percent"])]
    for name in _TOP_LEVEL:  # (an align job's seed is its run's, in ``align``)
        if name in f and name in FIELDS[kind] and not (kind == "align" and name == "seed"):
            out[name] = f[name]
    if "metadata" in f:
        out["metadata"] = dict(_pairs(f["metadata"], "metadata"))
    return out


def params(method: str, text: str) -> dict[str, Any]:
    """A method's parameters from ``name=value`` lines (see ``param_value``)."""
    return {name: param_value(method, name, value)
            for name, value in _pairs(text, f"{method} parameters")}


def param_value(method: str, name: str, text: str) -> Any:
    """A parameter's value as typed: text for a parameter the registry types as a string
    (or one of some strings), else JSON (``3``, ``0.5``, ``true``, ``null``, ``{...}``),
    else the text itself (the registry's check then names what it expected)."""
    kind = param_types().get(method, {}).get(name, "")
    if kind.startswith(("str", "Literal")):
        return text
    try:
        return json.loads(text)
    except ValueError:
        return text


def method_lines(text: str) -> list[dict[str, Any]]:
    """A curve's methods, one a line: the name, then its ``name=value`` parameters
    separated by spaces (quote a value holding spaces: ``base_params='{"C": 2}'``)."""
    out = []
    for number, line in enumerate(text.splitlines(), 1):
        try:
            words = shlex.split(line)
        except ValueError as exc:
            raise FormError(f"methods: line {number}: {exc}") from None
        if not words:
            continue
        method, rest = words[0], words[1:]
        spec: dict[str, Any] = {"method": method}
        if rest:
            spec["params"] = params(method, "\n".join(rest))
        out.append(spec)
    return out


def _pairs(text: str, what: str) -> list[tuple[str, str]]:
    out = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        name, sep, value = line.partition("=")
        if not sep or not name.strip():
            raise FormError(f"{what}: line {number} ({line.strip()[:60]!r}) is not "
                            "name=value")
        out.append((name.strip(), value.strip()))
    return out


def _items(text: str) -> list[str]:
    return [t for t in re.split(r"[\s,]+", text) if t]


@cache
def param_types() -> dict[str, dict[str, str]]:
    """Each registered method's parameters by name, with their type's name."""
    return {m["name"]: {p["name"]: p["type"] for p in m["params"]} for m in methods()}


@cache
def methods() -> list[dict[str, Any]]:
    """The registry's methods as ``GET /v1/methods`` lists them."""
    from isa.select import describe_methods  # the registry (numpy only), as create_job reads it

    return describe_methods()


def validation_message(exc: ValidationError) -> str:
    """Pydantic's errors as one line, each at its place in the request (without the
    union's job-type tag)."""
    return "; ".join(f"{'.'.join(str(p) for p in e['loc'][1:]) or 'request'}: {e['msg']}"
                     for e in exc.errors())


def _default(model: Any, name: str) -> Any:
    field = model.model_fields[name]
    return field.default_factory() if field.default_factory else field.default


def placeholders() -> dict[str, str]:
    """What a blank input stands for (the contract's defaults), shown in the inputs."""
    align = dataclasses.asdict(AlignConfig())
    for name in ("lora", "gradient_checkpointing"):
        align[name] = "yes" if align[name] else "no"
    align["target_modules"] = ", ".join(align["target_modules"])
    return {
        **{k: "" if v is None else str(v) for k, v in align.items()},
        "seed": str(_default(SelectJob, "seed")),
        "eval_fraction": str(_default(EvaluateJob, "eval_fraction")),
        "share": str(_default(CurveJob, "share")),
        "budgets_percent": ", ".join(f"{b:g}" for b in _default(CurveJob, "budgets_percent")),
        "methods": "\n".join(m.method for m in _default(CurveJob, "methods")),
    }
