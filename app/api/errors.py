"""One error shape everywhere: ``{"error": {"code", "message", "details"}}``."""

from __future__ import annotations

import logging
import re
from typing import Any

import kombu.exceptions
import redis
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from core.contract import JOB_TYPES

logger = logging.getLogger("isa.api")
#: python-multipart's longest header line in a part (its MAX_HEADER_SIZE default)
MULTIPART_HEADER_LIMIT = 4096 + 128
#: seconds a client is asked to wait when the store is unavailable
RETRY_AFTER_S = 5


class ApiError(Exception):
    """An error the API answers with ``status`` and a stable ``code``."""

    def __init__(self, http_status: int, code: str, message: str, /,
                 headers: dict[str, str] | None = None, **details: Any) -> None:
        super().__init__(message)
        self.status, self.code, self.message = http_status, code, message
        self.headers = headers
        self.details = details


_DESCRIPTIONS = {
    400: "a malformed request", 401: "no API key, or an unknown one",
    403: "not allowed from here", 404: "no such record for this tenant",
    409: "the record's state does not allow it", 413: "the body is over the limit",
    416: "the Range asks for bytes past the file's end (Content-Range gives its size)",
    422: "the request breaks a rule (the error's code says which)",
    429: "a quota is reached (Retry-After says when to try again)",
    503: "the store is unavailable for a moment (Retry-After)",
}


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` declaring ``statuses`` with the one error body."""
    from app.api.schemas import ErrorResponse

    return {s: {"model": ErrorResponse, "description": _DESCRIPTIONS[s]} for s in statuses}


def not_found(kind: str, record_id: str) -> ApiError:
    # Another tenant's id answers exactly like an id that does not exist.
    return ApiError(404, f"{kind}_not_found", f"no {kind} {record_id!r}", id=record_id)


def _body(code: str, message: str, details: Any = None) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, "details": details or {}}}


_STATUS_CODES = {401: "unauthorized", 403: "forbidden", 404: "not_found",
                 405: "method_not_allowed", 413: "payload_too_large"}


def _field_error(error: dict[str, Any]) -> dict[str, str]:
    """One validation error as ``{field, message}``, in the client's terms: the job
    request union's tag is not part of a field's path, a missing tag says which types
    exist."""
    loc = [str(p) for p in error["loc"]]
    if len(loc) > 1 and loc[0] == "body" and loc[1] in JOB_TYPES:
        del loc[1]
    if error["type"] in ("union_tag_not_found", "union_tag_invalid"):
        return {"field": ".".join([*loc, "type"]),
                "message": f"must be one of {', '.join(JOB_TYPES)}"}
    return {"field": ".".join(loc), "message": error["msg"]}


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def _api(_: Request, exc: ApiError) -> JSONResponse:
        return JSONResponse(_body(exc.code, exc.message, exc.details), status_code=exc.status,
                            headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [_field_error(e) for e in exc.errors()]
        first = errors[0] if errors else {"field": "", "message": "invalid request"}
        return JSONResponse(_body("validation_error", f"{first['field']}: {first['message']}",
                                  {"errors": errors}), status_code=422)

    @app.exception_handler(redis.exceptions.ConnectionError)
    @app.exception_handler(redis.exceptions.TimeoutError)
    @app.exception_handler(kombu.exceptions.OperationalError)
    async def _store_unavailable(_: Request, exc: Exception) -> JSONResponse:
        # Redis or the broker away (restarting, a network cut): the request may be
        # retried as it is; the log and the message say which one is away
        broker = isinstance(exc, kombu.exceptions.OperationalError)
        logger.warning("%s unavailable: %s", "the broker" if broker else "Redis",
                       type(exc).__name__)
        what = "message broker" if broker else "store"
        return JSONResponse(_body("service_unavailable", f"the service's {what} is "
                                  "unavailable for a moment; retry the request shortly"),
                            status_code=503, headers={"Retry-After": str(RETRY_AFTER_S)})

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, exc: Exception) -> JSONResponse:
        logger.exception("unhandled error", exc_info=exc)
        return JSONResponse(_body("internal_error", "the server failed to answer this "
                                  "request; it has been logged"), status_code=500)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = getattr(exc, "code", None) or _STATUS_CODES.get(exc.status_code, "http_error")
        details = {"limit": exc.limit} if hasattr(exc, "limit") else None
        headers = getattr(exc, "headers", None)
        message = str(exc.detail)
        if exc.status_code == 400 and message == "Invalid multipart data.":
            # Starlette's one message for every python-multipart failure; the one clients
            # hit is a part header over its limit, most often a very long file name
            code, message = "invalid_multipart", (
                "the multipart body could not be read: a part's headers are malformed or "
                f"too long (a header line, with its file name, is at most "
                f"{MULTIPART_HEADER_LIMIT} bytes)")
            details = {"limit": MULTIPART_HEADER_LIMIT}
        if exc.status_code == 405:
            # Starlette's Allow names the methods of the first route matching the path;
            # a path served by several routes (GET and DELETE) allows all of theirs
            headers = {**(headers or {}), "Allow": ", ".join(_allowed(app, request))}
        return JSONResponse(_body(code, message, details), status_code=exc.status_code,
                            headers=headers)


def _allowed(app: FastAPI, request: Request) -> list[str]:
    """Every method the OpenAPI document lists for the request's path."""
    if not hasattr(app.state, "allow_table"):
        table = []
        for path, ops in app.openapi()["paths"].items():
            pattern = re.sub(r"\\\{[^/]+?\\\}", "[^/]+", re.escape(path))
            methods = {m.upper() for m in ops}
            table.append((re.compile(f"^{pattern}$"), methods | ({"HEAD"} if "GET" in methods
                                                                 else set()), "{" not in path))
        app.state.allow_table = table
    # a literal path (/v1/datasets/import) is its own resource, not an id of the
    # templated one beside it (/v1/datasets/{dataset_id})
    literal = [m for p, m, is_literal in app.state.allow_table
               if is_literal and p.match(request.url.path)]
    matches = literal or [m for p, m, _ in app.state.allow_table if p.match(request.url.path)]
    return sorted(set().union(*matches)) if matches else []
