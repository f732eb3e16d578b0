"""The polling hot path: job polls and the first pages of the job list, answered before
FastAPI routes them.

Fleets of pollers ask for a job's status thousands of times a second, and dashboards ask
for the newest jobs. FastAPI matches the route and solves its dependencies (settings, key,
reader, query parameters) on every request, more than half of a poll's cost in the
gateway (profiled: ``bench/gateway.py`` measures the difference). So the request shapes
that are certainly successful are answered here:

- ``GET /v1/jobs/{id}``, no query string, a valid API key, the caller's own job;
- ``GET /v1/jobs`` with no query string or only ``limit`` and/or ``offset``, each once, as
  plain decimals in the route's bounds (``app.api.pagination``).

This sits in front of the whole middleware stack (``app.main.Gateway`` asks it first), so
such a request also skips Starlette's and FastAPI's own layers (error handling, telemetry,
the body limits, each a coroutine frame around every message); it counts itself in the
HTTP metrics under the route's label. Everything else (no key or a wrong one, another
tenant's or an unknown job, any other query, Redis failing) goes on to the FastAPI route
untouched, so every error answer, the OpenAPI document and its validation stay in one
place: ``app/api/routes/jobs.py``, which builds its bodies with the functions below.
"""

from __future__ import annotations

import re
import time
from typing import Any

from app.api.deps import _async_jobs, tenant_of_key
from app.api.schemas import JobsPublic
from app.metrics import LATENCY, REQUESTS
from core.contract import job_public
from core.records import AsyncJobReader, Page
from core.settings import Settings, get_settings

_JOB_PATH = re.compile(r"/v1/jobs/([^/]+)")  # Starlette's str convertor: one segment
#: the list's query strings answered here: limit 1-500 and offset 0-1,000,000 (the
#: route's bounds), plain decimals, each at most once, in either order
_LIMIT = rb"limit=(?P<limit>[1-9][0-9]{0,2})"
_OFFSET = rb"offset=(?P<offset>0|[1-9][0-9]{0,6})"
_LIST_QUERY = re.compile(rb"(?:%s(?:&%s)?|%s(?:&%s)?)?" % (
    _LIMIT, _OFFSET, _OFFSET.replace(b"offset>", b"offset2>"),
    _LIMIT.replace(b"limit>", b"limit2>")))
_MAX_LIMIT, _MAX_OFFSET, _DEFAULT_LIMIT = 500, 1_000_000, 50
#: the FastAPI routes' labels in the HTTP metrics: their answers and these count as one
_JOB_ROUTE, _LIST_ROUTE = "/v1/jobs/{job_id}", "/v1/jobs"
_HEADERS = [(b"content-type", b"application/json")]


async def job_status_body(reader: AsyncJobReader, settings: Settings, job_id: str,
                          tenant: str) -> bytes | None:
    """The JSON of ``GET /v1/jobs/{id}``, or None if the tenant has no such job. Read
    once and serialised once (no response_model validation on the way out)."""
    doc = await reader.get(job_id, tenant)
    if doc is None:
        return None
    waiting = None
    if doc["status"] in ("queued", "running") and reader.presence is not None:
        waiting = await reader.presence.waiting_since(doc.get("queue") or settings.default_queue,
                                                      doc["created_at"])
    return job_public(doc, waiting).model_dump_json().encode()


def jobs_page_body(page: Page) -> bytes:
    """The JSON of ``GET /v1/jobs`` for a page (serialised once, as above)."""
    return JobsPublic(data=[job_public(d) for d in page.records], count=page.count,
                      next_after=page.next_after, has_more=page.next_after is not None
                      ).model_dump_json().encode()


def list_query(query: bytes) -> tuple[int, int] | None:
    """(limit, offset) of a list query answered here, else None (the route's)."""
    m = _LIST_QUERY.fullmatch(query)
    if m is None:
        return None
    limit = int(m["limit"] or m["limit2"] or _DEFAULT_LIMIT)
    offset = int(m["offset"] or m["offset2"] or 0)
    return (limit, offset) if limit <= _MAX_LIMIT and offset <= _MAX_OFFSET else None


def api_key_of(headers: list[tuple[bytes, bytes]]) -> str | None:
    """The key ``app.api.deps.get_tenant`` would read: ``X-API-Key`` when present and not
    empty, else the credentials of ``Authorization: Bearer …`` (any case), stripped."""
    x_api_key = authorization = None
    for name, value in headers:
        if name == b"x-api-key" and x_api_key is None:
            x_api_key = value.decode("latin-1")
        elif name == b"authorization" and authorization is None:
            authorization = value.decode("latin-1")
    if x_api_key:
        return x_api_key
    if authorization:
        scheme, _, credentials = authorization.partition(" ")
        if scheme.lower() == "bearer" and credentials:
            return credentials.strip() or None
    return None


class JobPollFastPath:
    """Answers a successful job poll or list page itself; passes every other request on."""

    def __init__(self, app: Any) -> None:
        self.app = app
        # bound once: a label lookup per request is a dict walk and, in multiprocess
        # mode, a file-backed value's lookup
        self._counted = {route: (LATENCY.labels("GET", route),
                                 REQUESTS.labels("GET", route, "200"))
                         for route in (_JOB_ROUTE, _LIST_ROUTE)}

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if not await self.answered(scope, send):
            await self.app(scope, receive, send)

    async def answered(self, scope: dict, send: Any) -> bool:
        """True if this was a successful poll or list page and it has been answered; else
        nothing was sent and the request is the app's."""
        if scope["type"] != "http" or scope["method"] != "GET":
            return False
        path, query = scope["path"], scope.get("query_string") or b""
        if path == _LIST_ROUTE:
            if (paging := list_query(query)) is None:
                return False
            route, start = _LIST_ROUTE, time.perf_counter()
            body = await self._body(scope, None, paging)
        elif not query and (match := _JOB_PATH.fullmatch(path)):
            route, start = _JOB_ROUTE, time.perf_counter()
            body = await self._body(scope, match[1], None)
        else:
            return False
        if body is None:
            return False
        await send({"type": "http.response.start", "status": 200, "headers": [
            *_HEADERS, (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})
        latency, answered = self._counted[route]
        latency.observe(time.perf_counter() - start)
        answered.inc()
        return True

    @staticmethod
    async def _body(scope: dict, job_id: str | None,
                    paging: tuple[int, int] | None) -> bytes | None:
        key = api_key_of(scope.get("headers") or [])
        if not key:
            return None
        s = get_settings()
        tenant = tenant_of_key(s, key)
        if tenant is None:
            return None
        reader = _async_jobs(s.redis_url, s.redis_pool_size, s.key_prefix, s.stale_after_s)
        try:
            if job_id is not None:
                return await job_status_body(reader, s, job_id, tenant)
            limit, offset = paging  # type: ignore[misc]
            return jobs_page_body(await reader.page(tenant, limit=limit, offset=offset))
        except Exception:  # noqa: BLE001 - Redis failing: the route answers it, as any error
            return None
