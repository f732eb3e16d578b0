"""The polling hot path: ``GET /v1/jobs/{id}`` answered before FastAPI routes it.

Fleets of pollers ask for a job's status thousands of times a second. FastAPI matches
the route and solves its dependencies (settings, key, reader) on every request, about
60% of a poll's cost in the gateway (profiled: ``bench/gateway.py`` measures the
difference). So a plain ASGI middleware answers the one request shape that is certainly a
successful poll: GET, this path, no query string, a valid API key, the caller's own job.
Everything else (no key or a wrong one, another tenant's or an unknown job, a query
string, Redis failing) goes on to the FastAPI route untouched, so every error answer,
the OpenAPI document and its validation stay in one place: ``app/api/routes/jobs.py``.
"""

from __future__ import annotations

import re
from types import SimpleNamespace
from typing import Any

from app.api.deps import _async_jobs, tenant_of_key
from core.contract import job_public
from core.records import AsyncJobReader
from core.settings import Settings, get_settings

_JOB_PATH = re.compile(r"/v1/jobs/([^/]+)")  # Starlette's str convertor: one segment
#: what MetricsMiddleware reads as the route's label: the same as the FastAPI route's
_ROUTE = SimpleNamespace(path="/v1/jobs/{job_id}")
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

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if (scope["type"] == "http" and scope["method"] == "GET"
                and not scope.get("query_string")
                and (match := _JOB_PATH.fullmatch(scope["path"]))):
            body = await self._body(scope, match[1])
            if body is not None:
                scope["route"] = _ROUTE
                await send({"type": "http.response.start", "status": 200, "headers": [
                    *_HEADERS, (b"content-length", str(len(body)).encode())]})
                await send({"type": "http.response.body", "body": body})
                return
        await self.app(scope, receive, send)

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
