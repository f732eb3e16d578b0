"""Talking to an ISA service: the wire contract and a typed client (sync and async).

    from isa.remote import Client

    with Client("http://localhost:8000", api_key="dev-key") as isa:
        ds = isa.upload("prefs.jsonl.gz")
        job = isa.select(ds.id, method="isa", budget="5%").wait()
        isa.download(job.id, "subset.jsonl", format="trl")
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

_EXPORTS = {
    "Client": "isa.remote.client",
    "AsyncClient": "isa.remote.client",
    "ServiceError": "isa.remote.errors",
    "error_for_code": "isa.remote.errors",
    "Job": "isa.remote.client",
    "AsyncJob": "isa.remote.client",
}


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(import_module(_EXPORTS[name]), name)


__all__ = sorted(_EXPORTS)
