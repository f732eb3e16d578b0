"""The gateway's HTTP protocol: uvicorn's httptools protocol with the read timeouts it
lacks, so that slow or silent clients cannot hold connections (slowloris):

- a request's headers must arrive within ``api_header_timeout_s`` of its first byte (or of
  the connection's opening): else 408 and the connection closes;
- a request body must keep arriving: no more than ``api_body_idle_timeout_s`` between two
  reads (an upload of any size that progresses is never cut; one that stalls is);
- at most ``api_max_half_open`` connections per process may be waiting for their headers
  at once; a new one past that evicts the one that has waited longest (408), so a flood of
  silent connections cannot lock out clients that send their headers promptly.

``app.serve`` runs the gateway with it (``http=GuardedHTTPProtocol``).
"""

from __future__ import annotations

import asyncio
from typing import Any, ClassVar

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from core.settings import get_settings

_TIMEOUT_408 = (b"HTTP/1.1 408 Request Timeout\r\ncontent-type: application/json\r\n"
                b"connection: close\r\ncontent-length: %d\r\n\r\n%s")
_BODY_408 = (b'{"error": {"code": "request_timeout", "message": "the request\'s headers did '
             b'not arrive in time", "details": {}}}')


class GuardedHTTPProtocol(HttpToolsProtocol):
    #: connections of this process still waiting for their headers, oldest first
    half_open: ClassVar[dict[GuardedHTTPProtocol, None]] = {}

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        s = get_settings()
        self.header_timeout = s.api_header_timeout_s
        self.body_idle_timeout = s.api_body_idle_timeout_s
        self.max_half_open = s.api_max_half_open
        self._header_timer: asyncio.TimerHandle | None = None
        self._body_timer: asyncio.TimerHandle | None = None

    # -- headers -------------------------------------------------------------------------
    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        while len(self.half_open) >= self.max_half_open:
            next(iter(self.half_open))._headers_late()  # the longest waiting goes
        self._await_headers()

    def _await_headers(self) -> None:
        if self._header_timer is None:
            self.half_open[self] = None
            self._header_timer = self.loop.call_later(self.header_timeout, self._headers_late)

    def _headers_arrived(self) -> None:
        self.half_open.pop(self, None)
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _headers_late(self) -> None:
        self._headers_arrived()  # off the list and its timer off, whoever called
        if not self.transport.is_closing():
            self.transport.write(_TIMEOUT_408 % (len(_BODY_408), _BODY_408))
            self.transport.close()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._await_headers()  # the next request on a kept-alive connection

    def on_headers_complete(self) -> None:
        self._headers_arrived()
        super().on_headers_complete()
        if self.cycle is not None and self.cycle.more_body:
            self._await_body()

    # -- body ----------------------------------------------------------------------------
    def _await_body(self) -> None:
        if self._body_timer is not None:
            self._body_timer.cancel()
        self._body_timer = self.loop.call_later(self.body_idle_timeout, self._body_stalled)

    def _body_stalled(self) -> None:
        self._body_timer = None
        if self.flow is not None and self.flow.read_paused:
            self._await_body()  # the app is behind, not the client: wait for it
            return
        if not self.transport.is_closing():
            # the app's receive() sees a disconnect; an upload in progress is discarded
            self.transport.close()

    def on_body(self, body: bytes) -> None:
        super().on_body(body)
        self._await_body()

    def on_message_complete(self) -> None:
        if self._body_timer is not None:
            self._body_timer.cancel()
            self._body_timer = None
        super().on_message_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        self._headers_arrived()
        if self._body_timer is not None:
            self._body_timer.cancel()
            self._body_timer = None
        super().connection_lost(exc)
