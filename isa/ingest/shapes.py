"""Preference-data shapes: detection and normalisation of one record to ``Example``s.

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
- ``ultrafeedback_binarized``, ``orca``, ``pku_saferlhf``, ``shp``, ``ranked``: the
  public families of ``families.py`` (its docstring gives each one's columns and rule).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from . import families
from .families import PAIRINGS, RANKED_ANSWERS, RANKED_PROMPTS, Pairing
from .fields import ShapeViolation, boolean, maybe_json, messages, shared_messages, string
from .records import Example, Message, Text

__all__ = ["CANONICAL_FIELDS", "PAIRINGS", "SHAPES", "ShapeViolation", "consumed_fields",
           "detect_shape", "parse_examples"]

SHAPES: tuple[str, ...] = (
    "standard",
    "implicit_prompt",
    "conversational",
    "conversational_implicit",
    "kto",
    "hh_raw",
    "openai",
    "ultrafeedback_binarized",
    "orca",
    "pku_saferlhf",
    "shp",
    "ranked",
)

_CONSUMED: dict[str, tuple[str, ...]] = {
    "standard": ("prompt", "chosen", "rejected"),
    "implicit_prompt": ("chosen", "rejected"),
    "conversational": ("prompt", "chosen", "rejected"),
    "conversational_implicit": ("chosen", "rejected"),
    "kto": ("prompt", "completion", "label"),
    "hh_raw": ("chosen", "rejected"),
    "openai": ("input", "preferred_output", "non_preferred_output"),
    "ultrafeedback_binarized": ("prompt", "chosen", "rejected"),
    "orca": ("system", "question", "chosen", "rejected"),
    "pku_saferlhf": ("prompt", "response_0", "response_1", "better_response_id"),
    "shp": ("history", "human_ref_A", "human_ref_B", "labels"),
    "ranked": (*RANKED_PROMPTS, *RANKED_ANSWERS),
}

#: the fields a ``column_map`` may name as targets (``{"their_column": "prompt"}``): every
#: field a shape reads, and the numeric columns methods read (``margin`` and the scores)
CANONICAL_FIELDS: tuple[str, ...] = (
    *dict.fromkeys(f for fields in _CONSUMED.values() for f in fields),
    "margin", "score_chosen", "score_rejected",
)

HH_HUMAN = "\n\nHuman:"
HH_ASSISTANT = "\n\nAssistant:"


def detect_shape(record: dict[str, Any]) -> str | None:
    """Name the shape of one (column-mapped) record, or ``None`` if none fits."""
    keys = record.keys()
    if "preferred_output" in keys and "non_preferred_output" in keys:
        return "openai"
    if "completion" in keys and "label" in keys:
        return "kto"
    if "chosen" in keys and "rejected" in keys:
        chosen = maybe_json(record["chosen"])
        if "question" in keys and "prompt" not in keys and isinstance(chosen, str):
            return "orca"
        if "prompt" in keys:
            if not isinstance(chosen, list):
                return "standard"
            # a string prompt beside message lists: UltraFeedback-binarized's layout
            return ("conversational" if isinstance(maybe_json(record["prompt"]), list)
                    else "ultrafeedback_binarized")
        if isinstance(chosen, list):
            return "conversational_implicit"
        if isinstance(chosen, str) and chosen.lstrip("\n ").startswith("Human:") \
                and HH_ASSISTANT in chosen:
            return "hh_raw"
        return "implicit_prompt"
    # the layouts without chosen/rejected columns (a pair file may carry an "answers"
    # column of its own: it stays a pair file)
    if any(k in keys for k in RANKED_ANSWERS) and any(k in keys for k in RANKED_PROMPTS):
        return "ranked"
    if {"response_0", "response_1", "better_response_id"} <= keys:
        return "pku_saferlhf"
    if {"human_ref_A", "human_ref_B", "labels"} <= keys:
        return "shp"
    return None


def consumed_fields(shape: str) -> tuple[str, ...]:
    return _CONSUMED[shape]


def parse_examples(shape: str, record: dict[str, Any], *, row_id: str, row: int,
                   line: int | None, raw: dict[str, Any], extra: dict[str, Any],
                   pairing: Pairing = "best_vs_worst") -> list[Example]:
    """Normalise ``record`` (already column-mapped) as ``shape``: the preference pairs
    (or the KTO item) it holds, each an ``Example``; raise ShapeViolation."""
    if shape == "ranked":
        parsed = families.ranked(record, pairing)
    elif shape in _FAMILIES:
        parsed = _FAMILIES[shape](record)
    else:
        parsed = [_PARSERS[shape](record)]
    out = []
    for fields in parsed:
        suffix = fields.pop("suffix", None)
        derived = fields.pop("derived", None)
        out.append(Example(row_id=row_id if suffix is None else f"{row_id}/{suffix}", row=row,
                           line=line, extra={**extra, **derived} if derived else extra,
                           raw=raw, **fields))
    return out


def parse_record(shape: str, record: dict[str, Any], *, row_id: str, row: int,
                 line: int | None, raw: dict[str, Any], extra: dict[str, Any]) -> Example:
    """The one ``Example`` of a one-pair shape (see :func:`parse_examples`)."""
    (example,) = parse_examples(shape, record, row_id=row_id, row=row, line=line, raw=raw,
                                extra=extra)
    return example


# --- per-shape parsers -----------------------------------------------------------------


def _standard(r: dict[str, Any]) -> dict[str, Any]:
    return {"kind": "pair", "prompt": string(r, "prompt", allow_empty=True),
            "chosen": string(r, "chosen"), "rejected": string(r, "rejected")}


def _implicit_prompt(r: dict[str, Any]) -> dict[str, Any]:
    chosen, rejected = string(r, "chosen"), string(r, "rejected")
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
    return {"kind": "pair", "prompt": messages(r, "prompt"), "chosen": messages(r, "chosen"),
            "rejected": messages(r, "rejected")}


def _conversational_implicit(r: dict[str, Any]) -> dict[str, Any]:
    chosen, rejected = messages(r, "chosen"), messages(r, "rejected")
    n = shared_messages(chosen, rejected)
    return {"kind": "pair", "prompt": chosen[:n], "chosen": chosen[n:], "rejected": rejected[n:]}


def _kto(r: dict[str, Any]) -> dict[str, Any]:
    prompt_value = maybe_json(r.get("prompt"))
    completion_value = maybe_json(r.get("completion"))
    prompt: Text = (messages(r, "prompt") if isinstance(prompt_value, list)
                    else string(r, "prompt", allow_empty=True))
    completion: Text = (messages(r, "completion") if isinstance(completion_value, list)
                        else string(r, "completion"))
    return {"kind": "unpaired", "prompt": prompt, "completion": completion,
            "label": boolean(r, "label")}


def _hh_raw(r: dict[str, Any]) -> dict[str, Any]:
    chosen, rejected = string(r, "chosen"), string(r, "rejected")
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
    turns: list[Message] = []
    if parts[0].strip():
        turns.append({"role": "user", "content": parts[0].strip()})
    for speaker, content in zip(parts[1::2], parts[2::2], strict=True):
        role = "user" if speaker == "Human" else "assistant"
        if content.strip() or role == "user":
            turns.append({"role": role, "content": content.strip()})
    return turns


def _common_prefix_len(a: str, b: str) -> int:
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i


def _openai(r: dict[str, Any]) -> dict[str, Any]:
    inp = maybe_json(r.get("input"))
    if not isinstance(inp, dict) or "messages" not in inp:
        raise ShapeViolation("wrong_type", "expected an object with 'messages'", "input")
    prompt = messages({"input.messages": inp["messages"]}, "input.messages")
    return {"kind": "pair", "prompt": prompt,
            "chosen": messages(r, "preferred_output"),
            "rejected": messages(r, "non_preferred_output")}


_PARSERS: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
    "standard": _standard,
    "implicit_prompt": _implicit_prompt,
    "conversational": _conversational,
    "conversational_implicit": _conversational_implicit,
    "kto": _kto,
    "hh_raw": _hh_raw,
    "openai": _openai,
}

_FAMILIES: dict[str, Callable[[dict[str, Any]], list[dict[str, Any]]]] = {
    "ultrafeedback_binarized": families.ultrafeedback_binarized,
    "orca": families.orca,
    "pku_saferlhf": families.pku_saferlhf,
    "shp": families.shp,
}
