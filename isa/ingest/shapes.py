"""Preference-data shapes: detection and normalisation of one record to an ``Example``.

Shapes (names are stable; they appear in reports, the CLI and the API):

- ``standard``: ``prompt``, ``chosen``, ``rejected`` strings (TRL standard).
- ``implicit_prompt``: ``chosen``/``rejected`` full texts; the prompt is their shared
  prefix (TRL's rule).
- ``conversational``: ``prompt``, ``chosen``, ``rejected`` as lists of messages.
- ``conversational_implicit``: ``chosen``/``rejected`` message lists; the prompt is
  their shared leading messages.
- ``kto``: ``prompt``, ``completion``, ``label`` (bool) — unpaired.
- ``hh_raw``: Anthropic HH-RLHF ``"\\n\\nHuman: … \\n\\nAssistant: …"`` strings; the
  prompt is the dialogue up to and including the last ``Assistant:`` marker.
- ``openai``: OpenAI preference fine-tuning rows — ``input.messages``,
  ``preferred_output``, ``non_preferred_output``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .records import Example, Message, Text

SHAPES: tuple[str, ...] = (
    "standard",
    "implicit_prompt",
    "conversational",
    "conversational_implicit",
    "kto",
    "hh_raw",
    "openai",
)

#: the canonical field names a ``column_map`` may point at source columns
CANONICAL_FIELDS: tuple[str, ...] = (
    "prompt", "chosen", "rejected", "completion", "label",
    "input", "preferred_output", "non_preferred_output",
)

HH_HUMAN = "\n\nHuman:"
HH_ASSISTANT = "\n\nAssistant:"
_TRUE = {"true", "1", "yes", "y", "t"}
_FALSE = {"false", "0", "no", "n", "f"}


class ShapeViolation(Exception):
    """A record does not fit the shape; ``field`` names the culprit."""

    def __init__(self, code: str, reason: str, field: str | None = None) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason
        self.field = field


def detect_shape(record: dict[str, Any]) -> str | None:
    """Name the shape of one (column-mapped) record, or ``None`` if none fits."""
    keys = record.keys()
    if "preferred_output" in keys and "non_preferred_output" in keys:
        return "openai"
    if "completion" in keys and "label" in keys:
        return "kto"
    if "chosen" in keys and "rejected" in keys:
        chosen = _maybe_json(record["chosen"])
        if "prompt" in keys:
            return "conversational" if isinstance(chosen, list) else "standard"
        if isinstance(chosen, list):
            return "conversational_implicit"
        if isinstance(chosen, str) and chosen.lstrip("\n ").startswith("Human:") \
                and HH_ASSISTANT in chosen:
            return "hh_raw"
        return "implicit_prompt"
    return None


def consumed_fields(shape: str) -> tuple[str, ...]:
    return {
        "standard": ("prompt", "chosen", "rejected"),
        "implicit_prompt": ("chosen", "rejected"),
        "conversational": ("prompt", "chosen", "rejected"),
        "conversational_implicit": ("chosen", "rejected"),
        "kto": ("prompt", "completion", "label"),
        "hh_raw": ("chosen", "rejected"),
        "openai": ("input", "preferred_output", "non_preferred_output"),
    }[shape]


def parse_record(shape: str, record: dict[str, Any], *, row_id: str, row: int,
                 line: int | None, raw: dict[str, Any], extra: dict[str, Any]) -> Example:
    """Normalise ``record`` (already column-mapped) as ``shape``; raise ShapeViolation."""
    fields = _PARSERS[shape](record)
    return Example(row_id=row_id, row=row, line=line, extra=extra, raw=raw, **fields)


# --- per-shape parsers -----------------------------------------------------------------


def _standard(r: dict[str, Any]) -> dict[str, Any]:
    return {"kind": "pair", "prompt": _string(r, "prompt", allow_empty=True),
            "chosen": _string(r, "chosen"), "rejected": _string(r, "rejected")}


def _implicit_prompt(r: dict[str, Any]) -> dict[str, Any]:
    chosen, rejected = _string(r, "chosen"), _string(r, "rejected")
    # TRL's extract_prompt rule: the longest common prefix, backed off past a space.
    idx = 0
    for idx in range(min(len(chosen), len(rejected))):  # noqa: B007
        if chosen[idx] != rejected[idx]:
            if idx > 0 and chosen[idx - 1] == " ":
                idx -= 1
            break
    else:
        raise ShapeViolation("no_difference", "chosen and rejected are identical or one is "
                             "a prefix of the other", "rejected")
    return {"kind": "pair", "prompt": chosen[:idx], "chosen": chosen[idx:],
            "rejected": rejected[idx:]}


def _conversational(r: dict[str, Any]) -> dict[str, Any]:
    return {"kind": "pair", "prompt": _messages(r, "prompt"), "chosen": _messages(r, "chosen"),
            "rejected": _messages(r, "rejected")}


def _conversational_implicit(r: dict[str, Any]) -> dict[str, Any]:
    chosen, rejected = _messages(r, "chosen"), _messages(r, "rejected")
    n = 0
    while n < min(len(chosen), len(rejected)) and chosen[n] == rejected[n]:
        n += 1
    if n == len(chosen) or n == len(rejected):
        raise ShapeViolation("no_difference", "chosen and rejected share every message",
                             "rejected")
    return {"kind": "pair", "prompt": chosen[:n], "chosen": chosen[n:], "rejected": rejected[n:]}


def _kto(r: dict[str, Any]) -> dict[str, Any]:
    prompt_value = _maybe_json(r.get("prompt"))
    completion_value = _maybe_json(r.get("completion"))
    prompt: Text = (_messages(r, "prompt") if isinstance(prompt_value, list)
                    else _string(r, "prompt", allow_empty=True))
    completion: Text = (_messages(r, "completion") if isinstance(completion_value, list)
                        else _string(r, "completion"))
    return {"kind": "unpaired", "prompt": prompt, "completion": completion,
            "label": _bool(r, "label")}


def _hh_raw(r: dict[str, Any]) -> dict[str, Any]:
    chosen, rejected = _string(r, "chosen"), _string(r, "rejected")
    c_cut, r_cut = chosen.rfind(HH_ASSISTANT), rejected.rfind(HH_ASSISTANT)
    if c_cut < 0:
        raise ShapeViolation("not_hh_dialogue", "no '\\n\\nAssistant:' turn", "chosen")
    if r_cut < 0:
        raise ShapeViolation("not_hh_dialogue", "no '\\n\\nAssistant:' turn", "rejected")
    c_cut += len(HH_ASSISTANT)
    r_cut += len(HH_ASSISTANT)
    if chosen[:c_cut] != rejected[:r_cut]:
        # A few real HH rows carry an unmarked "Human:" inside a reply, so the two sides'
        # last Assistant turns differ. Fall back to the last Assistant turn the two share
        # (TRL's shared-prefix rule, cut at a turn boundary).
        shared = _common_prefix_len(chosen, rejected)
        cut = chosen.rfind(HH_ASSISTANT, 0, shared)
        if cut < 0:
            raise ShapeViolation("prompt_mismatch", "chosen and rejected share no dialogue up "
                                 "to an Assistant turn, so they have no common prompt",
                                 "rejected")
        c_cut = r_cut = cut + len(HH_ASSISTANT)
    return {"kind": "pair", "prompt": chosen[:c_cut], "chosen": chosen[c_cut:],
            "rejected": rejected[r_cut:]}


def hh_to_messages(dialogue: str) -> list[Message]:
    """``"\n\nHuman: a\n\nAssistant: b"`` → user/assistant messages (a trailing empty
    ``Assistant:`` turn, as in an HH prompt, is dropped)."""
    import re

    parts = re.split(r"\n\n(Human|Assistant):", dialogue)
    messages: list[Message] = []
    if parts[0].strip():
        messages.append({"role": "user", "content": parts[0].strip()})
    for speaker, content in zip(parts[1::2], parts[2::2], strict=True):
        role = "user" if speaker == "Human" else "assistant"
        if content.strip() or role == "user":
            messages.append({"role": role, "content": content.strip()})
    return messages


def _common_prefix_len(a: str, b: str) -> int:
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i


def _openai(r: dict[str, Any]) -> dict[str, Any]:
    inp = _maybe_json(r.get("input"))
    if not isinstance(inp, dict) or "messages" not in inp:
        raise ShapeViolation("wrong_type", "expected an object with 'messages'", "input")
    prompt = _messages({"input.messages": inp["messages"]}, "input.messages")
    return {"kind": "pair", "prompt": prompt,
            "chosen": _messages(r, "preferred_output"),
            "rejected": _messages(r, "non_preferred_output")}


_PARSERS: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
    "standard": _standard,
    "implicit_prompt": _implicit_prompt,
    "conversational": _conversational,
    "conversational_implicit": _conversational_implicit,
    "kto": _kto,
    "hh_raw": _hh_raw,
    "openai": _openai,
}


# --- field validation ------------------------------------------------------------------


def _maybe_json(value: Any) -> Any:
    """CSV cells carry message lists and objects as JSON text; decode those."""
    if isinstance(value, str) and value[:1] in ("[", "{"):
        import orjson

        try:
            return orjson.loads(value)
        except orjson.JSONDecodeError:
            return value
    return value


def _require(r: dict[str, Any], name: str) -> Any:
    if name not in r:
        raise ShapeViolation("missing_field", "field is missing", name)
    value = r[name]
    if value is None:
        raise ShapeViolation("missing_field", "field is null", name)
    return value


def _string(r: dict[str, Any], name: str, *, allow_empty: bool = False) -> str:
    value = _require(r, name)
    if not isinstance(value, str):
        raise ShapeViolation("wrong_type", f"expected a string, found {type(value).__name__}",
                             name)
    if not allow_empty and not value.strip():
        raise ShapeViolation("empty_text", "text is empty", name)
    return value


def _messages(r: dict[str, Any], name: str) -> list[Message]:
    value = _maybe_json(_require(r, name))
    if not isinstance(value, list):
        raise ShapeViolation("wrong_type",
                             f"expected a list of messages, found {type(value).__name__}", name)
    out: list[Message] = []
    for i, m in enumerate(value):
        if not isinstance(m, dict) or not isinstance(m.get("role"), str) \
                or not isinstance(m.get("content"), str):
            raise ShapeViolation("wrong_type",
                                 f"message {i} must be an object with string 'role' and "
                                 "'content'", name)
        out.append(m)
    return out


def _bool(r: dict[str, Any], name: str) -> bool:
    value = _require(r, name)
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
        return value.strip().lower() in _TRUE
    raise ShapeViolation("wrong_type", f"expected a boolean, found {value!r}", name)
