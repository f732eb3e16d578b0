"""``Idempotency-Key`` (the IETF draft) for the routes that create a record: a job, a
data set. One request per (tenant, key) creates it; a repeat with the same body replays
it whatever its state (200), one that comes while it is still being created waits (409
``idempotency_key_in_progress``, ``Retry-After``), one with another body is refused (422
``idempotency_key_reused``). A request refused before its record exists frees its key.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

from app.api.errors import ApiError
from core.records import IdempotencyKeys


def claim_or_replay(idem: IdempotencyKeys, tenant: str, key: str, fingerprint: str,
                    record_id: str, read: Callable[[str], dict[str, Any] | None]
                    ) -> dict[str, Any] | None:
    """Claim ``key`` for ``record_id``: None when this request is the one to create it,
    else the record the first request created (``read`` fetches it by id)."""
    claim = idem.claim(tenant, key, fingerprint, record_id)
    if claim["id"] == record_id:
        return None
    if claim["fingerprint"] != fingerprint:
        raise ApiError(422, "idempotency_key_reused",
                       "this Idempotency-Key was used with a different request",
                       **{_id_field(claim["id"]): claim["id"]})
    existing = read(claim["id"])
    if existing is None:
        raise ApiError(409, "idempotency_key_in_progress", "a request with this "
                       "Idempotency-Key is still being processed; retry shortly",
                       headers={"Retry-After": "1"})
    return existing


@contextlib.contextmanager
def released_on_failure(idem: IdempotencyKeys, tenant: str, key: str | None,
                        record_id: str) -> Iterator[None]:
    """Free ``key`` when the block fails: its record was not created, and a retry of the
    request must not be answered "in progress" for a day."""
    try:
        yield
    except BaseException:
        if key is not None:
            idem.release(tenant, key, record_id)
        raise


def _id_field(record_id: str) -> str:
    # the details name the record as its kind does (job_id, dataset_id), as before
    return "dataset_id" if record_id.startswith("ds_") else "job_id"
