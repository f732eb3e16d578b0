"""Reading one field of a source record as the type a shape needs, or saying why not.

Every shape parser (``shapes.py``, ``families.py``) reads its fields through these, so a
bad value is reported the same way whatever the layout: a :class:`ShapeViolation` with a
stable code and the field's name.
"""

from __future__ import annotations

import math
from typing import Any

from .records import Message

_TRUE = {"true", "1", "yes", "y", "t"}
_FALSE = {"false", "0", "no", "n", "f"}


class ShapeViolation(Exception):
    """A record does not fit the shape; ``field`` names the culprit."""

    def __init__(self, code: str, reason: str, field: str | None = None) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason
        self.field = field


def maybe_json(value: Any) -> Any:
    """CSV cells carry message lists and objects as JSON text; decode those."""
    if isinstance(value, str) and value[:1] in ("[", "{"):
        import orjson

        try:
            return orjson.loads(value)
        except orjson.JSONDecodeError:
            return value
    return value


def require(r: dict[str, Any], name: str) -> Any:
    if name not in r:
        raise ShapeViolation("missing_field", "field is missing", name)
    value = r[name]
    if value is None:
        raise ShapeViolation("missing_field", "field is null", name)
    return value


def string(r: dict[str, Any], name: str, *, allow_empty: bool = False) -> str:
    value = require(r, name)
    if not isinstance(value, str):
        raise ShapeViolation("wrong_type", f"expected a string, found {type(value).__name__}",
                             name)
    if not allow_empty and not value.strip():
        raise ShapeViolation("empty_text", "text is empty", name)
    return value


def messages(r: dict[str, Any], name: str) -> list[Message]:
    value = maybe_json(require(r, name))
    return message_list(value, name)


def message_list(value: Any, name: str) -> list[Message]:
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


def shared_messages(chosen: list[Message], rejected: list[Message]) -> int:
    """How many leading messages the two answers' conversations share (their implicit
    prompt); ``no_difference`` when one holds nothing beyond them."""
    n = 0
    while n < min(len(chosen), len(rejected)) and chosen[n] == rejected[n]:
        n += 1
    if n == len(chosen) or n == len(rejected):
        raise ShapeViolation("no_difference", "chosen and rejected share every message",
                             "rejected")
    return n


def boolean(r: dict[str, Any], name: str) -> bool:
    value = require(r, name)
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
        return value.strip().lower() in _TRUE
    raise ShapeViolation("wrong_type", f"expected a boolean, found {value!r}", name)


def number(value: Any, name: str) -> float:
    """A finite number (a CSV cell's text included); ``bool`` is not a number here."""
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            raise ShapeViolation("wrong_type", f"expected a number, found {value!r}",
                                 name) from None
    if isinstance(value, bool) or not isinstance(value, int | float) \
            or not math.isfinite(value):
        raise ShapeViolation("wrong_type", f"expected a finite number, found {value!r}", name)
    return float(value)


def choice(r: dict[str, Any], name: str, options: tuple[Any, ...]) -> Any:
    """A value out of ``options`` (CSV text compared as text: "1" matches 1)."""
    value = require(r, name)
    for option in options:
        if value == option or (isinstance(value, str) and value.strip() == str(option)):
            return option
    raise ShapeViolation("wrong_value", f"expected one of {list(options)}, found {value!r}",
                         name)
