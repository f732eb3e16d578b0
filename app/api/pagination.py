"""Listing pages: a cursor (``after``) or an offset, read from one index (core.records)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Query
from starlette.concurrency import run_in_threadpool

from app.api.errors import ApiError
from core.records import AsyncJobReader, InvalidCursor, Page, RecordStore
from core.search import search_page

Limit = Annotated[int, Query(ge=1, le=500, description="records per page")]
After = Annotated[str | None, Query(
    max_length=256, description="the `next_after` of the previous page: the records after "
    "it, newest first. Records created meanwhile come before it, so paging this way returns "
    "every record that existed when it began exactly once.")]
Offset = Annotated[int, Query(ge=0, le=1_000_000, description="records to skip (`after` is "
                              "steadier while records are being created)")]


MetadataFilter = Annotated[str | None, Query(
    max_length=600, pattern=r"^[A-Za-z0-9_.-]{1,64}:.*$",
    description="`key:value`: the records carrying that metadata pair (no other filter)")]


def metadata_pair(value: str | None) -> tuple[str, str] | None:
    if value is None:
        return None
    key, _, wanted = value.partition(":")
    return key, wanted


FilenameFilter = Annotated[str | None, Query(
    min_length=1, max_length=255, description="part of the file name, any case: the data "
    "sets whose name contains it (with `status` too, and paged alike)")]


def _filters(after: str | None, offset: int, where: dict[str, Any] | None
             ) -> tuple[dict[str, Any], str | None]:
    """(the index filters, the file-name search) of a listing, or a 400 for a request
    that combines what cannot be combined."""
    if after is not None and offset:
        raise ApiError(400, "invalid_pagination", "give `after` or `offset`, not both")
    where = dict(where or {})
    filename = where.pop("filename", None)
    if where.get("metadata") is not None and (filename is not None or any(
            v is not None for k, v in where.items() if k != "metadata")):
        raise ApiError(400, "invalid_filter", "filter by `metadata` alone (without "
                       "status, type or filename)", field="metadata")
    return where, filename


def read_page(store: RecordStore, tenant: str, *, limit: int, after: str | None,
              offset: int, where: dict[str, Any] | None = None) -> Page:
    """A listing's page; ``where`` holds its filters (None: none), ``filename`` a part of
    the name (``core.search``), ``metadata`` a pair (alone)."""
    where, filename = _filters(after, offset, where)
    try:
        if filename is not None:
            return search_page(store, tenant, filename, limit=limit, after=after,
                               offset=offset, where=where)
        return store.list(tenant, limit=limit, after=after, offset=offset, where=where)
    except InvalidCursor:
        raise ApiError(400, "invalid_pagination", "`after` is not a cursor this service "
                       "gave (use a page's `next_after`)", field="after") from None


async def read_job_page(reader: AsyncJobReader, tenant: str, *, limit: int,
                        after: str | None, offset: int,
                        where: dict[str, Any] | None = None) -> Page:
    """:func:`read_page` of the jobs: a page by offset read on the event loop (the
    listing dashboards poll), a page after a cursor (which may read the index more than
    once) in a thread."""
    checked, _ = _filters(after, offset, where)
    if after is None:
        return await reader.page(tenant, limit=limit, offset=offset, where=checked)
    return await run_in_threadpool(read_page, reader.store, tenant, limit=limit, after=after,
                                   offset=offset, where=where)
