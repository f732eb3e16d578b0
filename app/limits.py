"""Request body limits, enforced while the body streams in (a plain ASGI middleware).

A declared ``Content-Length`` above the limit is refused before a byte is read; a chunked
body is refused as soon as it crosses the limit — not after the whole of it has been
spooled to disk, which is when a route could first look at its size. Uploads
(``POST /v1/datasets``, and the dashboard's form at ``POST /ui/datasets``) get
``max_upload_bytes`` (plus room for the multipart framing), every other request
``max_body_bytes``.
"""

from __future__ import annotations

from typing import Any

import orjson
from starlette.exceptions import HTTPException

from core.settings import get_settings

#: multipart boundaries and form fields around an upload's file bytes
MULTIPART_SLACK = 64 * 1024
#: the upload endpoints: the API's and the dashboard's form (app/ui)
UPLOAD_PATHS = ("/v1/datasets", "/ui/datasets")


class BodyTooLarge(HTTPException):
    """Raised from inside the body stream. An HTTPException, because FastAPI turns any
    other exception met while parsing a body into a 400."""

    def __init__(self, limit: int, upload: bool) -> None:
        self.code = "upload_too_large" if upload else "request_too_large"
        self.limit = limit
        what = "upload" if upload else "request body"
        super().__init__(413, f"the {what} is larger than the limit of {limit:,} bytes")


def _refusal(limit: int, upload: bool) -> tuple[dict, bytes]:
    exc = BodyTooLarge(limit, upload)
    body = orjson.dumps({"error": {"code": exc.code, "message": exc.detail,
                                   "details": {"limit": limit}}})
    start = {"type": "http.response.start", "status": 413,
             "headers": [(b"content-type", b"application/json"),
                         (b"content-length", str(len(body)).encode()),
                         (b"connection", b"close")]}
    return start, body


class BodyLimitMiddleware:
    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD", "OPTIONS", "DELETE"):
            await self.app(scope, receive, send)
            return
        s = get_settings()
        upload = scope["method"] == "POST" and scope["path"].rstrip("/") in UPLOAD_PATHS
        limit = s.max_upload_bytes if upload else s.max_body_bytes
        allowed = limit + (MULTIPART_SLACK if upload else 0)
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > allowed:
            await _send_refusal(send, limit, upload)
            return
        received = 0
        started = False

        async def counting_receive() -> dict:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > allowed:
                    raise BodyTooLarge(limit, upload)
            return message

        async def tracking_send(message: dict) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counting_receive, tracking_send)
        except BodyTooLarge:
            if not started:
                await _send_refusal(send, limit, upload)


async def _send_refusal(send: Any, limit: int, upload: bool) -> None:
    start, body = _refusal(limit, upload)
    await send(start)
    await send({"type": "http.response.body", "body": body})
