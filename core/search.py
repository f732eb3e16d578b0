"""Records found by part of a text field: data sets by file name (``GET
/v1/datasets?filename=``, the dashboard's search box), paged by the same cursors as every
listing (``RecordStore.list``) and combined with its status filter.

Cost: no index holds parts of names, so a search reads the whole listing index of the
filter (the tenant's data sets, or those of one status: one ZREVRANGE) and each record's
name (one HGET a record, pipelined ``BATCH`` at a time), then pages over the matches in
memory; O(n) in the tenant's data sets, about a millisecond per thousand. That is fine
for what a tenant holds: the service bounds a tenant's data sets by their bytes
(``max_stored_bytes_per_tenant``, 20 GiB) and each one is an upload of its own, so a
tenant has hundreds or a few thousand. One with far more would want an index of names
(e.g. RediSearch's); ``BATCH`` keeps each round trip and reply small meanwhile."""

from __future__ import annotations

from typing import Any

from core.records import Page, RecordStore, decode_cursor

#: names read per pipelined round trip
BATCH = 1000


def search_page(store: RecordStore, tenant: str, text: str, *, field: str = "filename",
                limit: int = 50, after: str | None = None, offset: int = 0,
                where: dict[str, Any] | None = None) -> Page:
    """The tenant's records matching ``where`` (``RecordStore.index_key``) whose ``field``
    contains ``text``, case-insensitively: newest first, ``limit`` after the cursor
    ``after`` (or after skipping ``offset``); ``count`` is every match. Raises
    ``InvalidCursor`` for a cursor this service did not write."""
    cursor = decode_cursor(after) if after is not None else None
    needle = text.casefold()
    # one read of the index: a consistent order even while records come and go
    entries: list[tuple[str, float]] = store.r.zrevrange(store.index_key(tenant, where),
                                                         0, -1, withscores=True)
    matches: list[tuple[str, float]] = []
    for start in range(0, len(entries), BATCH):
        part = entries[start:start + BATCH]
        pipe = store.r.pipeline(transaction=False)
        for rid, _ in part:
            pipe.hget(store.key(rid), field)
        matches += [entry for entry, value in zip(part, pipe.execute(), strict=True)
                    if value is not None and needle in value.casefold()]
    if cursor is not None:  # the matches after the cursor's place (newest first, then id)
        score, last_id = cursor
        first = next((i for i, (rid, s) in enumerate(matches)
                      if s < score or (s == score and rid < last_id)), len(matches))
    else:
        first = offset
    return store.page_of(matches[first:first + limit + 1], limit, len(matches))
