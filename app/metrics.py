"""HTTP metrics (requests and latency by route), as a plain ASGI middleware (Starlette's
BaseHTTPMiddleware costs a task and a stream per request). Per process, or summed over
the gateway's processes in Prometheus' multiprocess mode (``app/serve.py``)."""

from __future__ import annotations

import os
import time
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram

REGISTRY = CollectorRegistry()
REQUESTS = Counter("isa_http_requests", "HTTP requests", ["method", "route", "status"],
                   registry=REGISTRY)
LATENCY = Histogram("isa_http_request_seconds", "HTTP request latency", ["method", "route"],
                    registry=REGISTRY)


def http_registry() -> CollectorRegistry:
    """What ``/metrics`` reports of HTTP: this process's counters, or, when the gateway
    runs several processes (``app.serve`` sets ``PROMETHEUS_MULTIPROC_DIR``), every
    process's, summed from their files."""
    if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        return REGISTRY
    from prometheus_client import multiprocess

    merged = CollectorRegistry()
    multiprocess.MultiProcessCollector(merged)
    return merged


class MetricsMiddleware:
    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500

        async def capture(message: dict) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, capture)
        finally:
            route = getattr(scope.get("route"), "path", "unmatched")
            LATENCY.labels(scope["method"], route).observe(time.perf_counter() - start)
            REQUESTS.labels(scope["method"], route, str(status)).inc()
