"""``key=value`` options as the local CLI (``isa select --param``) and the remote one
(``isa remote select --param``) both read them: one module that neither CLI imports the
other for."""

from __future__ import annotations

import json
from typing import Any

import typer


def parse_params(items: list[str]) -> dict[str, Any]:
    """``key=value`` pairs; values read as JSON when they parse (numbers, null, true)."""
    out: dict[str, Any] = {}
    for item in items:
        if "=" not in item:
            raise typer.BadParameter(f"{item!r}: expected key=value", param_hint="--param")
        key, value = item.split("=", 1)
        try:
            out[key.strip()] = json.loads(value)
        except json.JSONDecodeError:
            out[key.strip()] = value
    return out
