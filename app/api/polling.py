"""The polling hot path: ``GET /v1/jobs/{id}`` answered before FastAPI routes it.

Fleets of pollers ask for a job's status thousands of times a second. FastAPI matches
the route and solves its dependencies (settings, key, reader) on every request, about
60% of a poll's cost in the gateway (profiled: ``bench/gateway.py`` measures the
difference). So a plain ASGI middleware answers the one request shape that is certainly a
successful poll: GET, this path, no query string, a valid API key, the caller's own job.
It sits in front of the whole middleware stack (``app.main.Gateway`` asks it first), so
such a poll also skips Starlette's and FastAPI's own layers (error handling, telemetry,
the body limits, each a coroutine frame around every message); it counts itself in the
HTTP metrics under the route's label. Everything else (no key or a wrong one, another
tenant's or an unknown job, a query
string, Redis failing) goes on to the FastAPI route untouched, so every error answer,
the OpenAPI document and its validation stay in one place: ``app/api/routes/jobs.py``.
"""

from __future__ import annotations

import re
import time
from typing import Any

from app.api.deps import _async_jobs, tenant_of_key
from app.metrics import LATENCY, REQUESTS
from core.contract import job_public
from core.records import AsyncJobReader
from core.settings import Settings, get_settings

_JOB_PATH = re.compile(r"/v1/jobs/([^/]+)")  # Starlette's str convertor: one segment
#: the FastAPI route's label in the HTTP metrics: its answers and these are counted as one
_ROUTE = "/v1/jobs/{job_id}"
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
    """Answers a successful job poll itself; passes every other request on."""

    def __init__(self, app: Any) -> None:
        self.app = app
        # bound once: a label lookup per request is a dict walk and, in multiprocess
        # mode, a file-backed value's lookup
        self._latency = LATENCY.labels("GET", _ROUTE)
        self._answered = REQUESTS.labels("GET", _ROUTE, "200")

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if not await self.answered(scope, send):
            await self.app(scope, receive, send)

    async def answered(self, scope: dict, send: Any) -> bool:
        """True if this was a successful poll and it has been answered; else nothing was
        sent and the request is the app's."""
        if not (scope["type"] == "http" and scope["method"] == "GET"
                and not scope.get("query_string")
                and (match := _JOB_PATH.fullmatch(scope["path"]))):
            return False
        start = time.perf_counter()
        body = await self._body(scope, match[1])
        if body is None:
            return False
        await send({"type": "http.response.start", "status": 200, "headers": [
            *_HEADERS, (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})
        self._latency.observe(time.perf_counter() - start)
        self._answered.inc()
        return True

    @staticmethod
    async def _body(scope: dict, job_id: str) -> bytes | None:
        key = api_key_of(scope.get("headers") or [])
        if not key:
            return None
        s = get_settings()
        tenant = tenant_of_key(s, key)
        if tenant is None:
            return None
        reader = _async_jobs(s.redis_url, s.redis_pool_size, s.key_prefix, s.stale_after_s)
        try:
            return await job_status_body(reader, s, job_id, tenant)
        except Exception:  # noqa: BLE001 - Redis failing: the route answers it, as any error
            return None
