"""What leaves a worker for a client never names a server path: error messages and
reports have every absolute path cut to its last part (the data set's own file is
shown by the name it was uploaded with)."""

from __future__ import annotations

import re
from typing import Any

_PATH = re.compile(r"(?<![\w.])(?:/[\w.\-+@]+)+/([\w.\-+@]+)")


def scrub(obj: Any, replace: dict[str, str] | None = None) -> Any:
    """``obj`` (a string, or dicts and lists of them) with ``replace``'s keys swapped for
    their values first, then any remaining absolute path cut to its last part."""
    if isinstance(obj, str):
        for old, new in (replace or {}).items():
            obj = obj.replace(old, new)
        return _PATH.sub(r"\1", obj)
    if isinstance(obj, dict):
        return {k: scrub(v, replace) for k, v in obj.items()}
    if isinstance(obj, list):
        return [scrub(v, replace) for v in obj]
    return obj
