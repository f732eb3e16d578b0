"""/healthz, /readyz, /metrics."""

from __future__ import annotations

import hmac
from typing import Any, Literal

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.core import CollectorRegistry, CounterMetricFamily, GaugeMetricFamily
from pydantic import BaseModel

from app.api.deps import Datasets, Jobs, MetricsStore, RedisDep, SettingsDep
from app.api.errors import ApiError, error_responses
from app.metrics import http_registry
from core import presence
from core.celery_app import celery_app, queue_names

router = APIRouter(tags=["health"])


#: headers a reverse proxy adds: a request carrying one came from wherever the proxy's
#: client is, although its connection is from loopback (a proxy on the same host)
_PROXY_HEADERS = ("forwarded", "x-forwarded-for", "x-real-ip", "x-forwarded-host")


def _check_metrics_access(request: Request, key: str | None) -> None:
    if key is None:
        proxied = any(h in request.headers for h in _PROXY_HEADERS)
        if proxied or request.client is None or \
                request.client.host not in ("127.0.0.1", "::1"):
            raise ApiError(403, "forbidden", "/metrics is served to the loopback interface "
                           "only, and not through a proxy, unless ISA_METRICS_KEY is set")
        return
    sent = request.headers.get("authorization", "")
    if not hmac.compare_digest(sent.encode(), f"Bearer {key}".encode()):
        raise ApiError(401, "invalid_metrics_key", "send the metrics key as "
                       "'Authorization: Bearer <key>'")


class Health(BaseModel):
    status: Literal["ok"]


class Readiness(BaseModel):
    status: Literal["ready", "not_ready"]
    checks: dict[str, Any]


_PROMETHEUS = {"description": "Prometheus text exposition format",
               "content": {CONTENT_TYPE_LATEST: {"schema": {"type": "string"}}}}


@router.get("/healthz", response_model=Health)
def healthz() -> dict[str, str]:
    """The process is up."""
    return {"status": "ok"}


@router.get("/readyz", response_model=Readiness,
            responses={503: {"model": Readiness, "description": "not ready"}})
def readyz(r: RedisDep, settings: SettingsDep) -> JSONResponse:
    """Redis answers and at least one worker replies to a ping. ``checks.queues`` names
    the live workers of each queue, and, for a queue none serves, since when (its jobs
    say ``waiting_for_worker``)."""
    checks: dict[str, object] = {}
    try:
        checks["redis"] = bool(r.ping())
        checks["queues"] = _queues(r, settings)
    except Exception as exc:  # noqa: BLE001 - any failure means not ready
        checks["redis"] = f"unreachable: {type(exc).__name__}"
    try:
        replies = celery_app.control.ping(timeout=1.0) or []
        checks["workers"] = len(replies)
    except Exception as exc:  # noqa: BLE001
        checks["workers"] = 0
        checks["workers_error"] = type(exc).__name__
    ready = checks["redis"] is True and checks["workers"] > 0  # type: ignore[operator]
    return JSONResponse({"status": "ready" if ready else "not_ready", "checks": checks},
                        status_code=200 if ready else 503)


def _queues(r: Any, s: Any) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for queue in queue_names():
        live = presence.live_workers(r, s.key_prefix, queue, s.stale_after_s)
        out[queue] = {"workers": sorted(live)}
        if not live:
            out[queue]["no_worker_since"] = presence.last_seen(r, s.key_prefix, queue)
    return out


@router.get("/metrics", response_class=Response,
            responses={200: _PROMETHEUS, **error_responses(401, 403, 503)})
def metrics(request: Request, jobs: Jobs, datasets: Datasets, store: MetricsStore,
            settings: SettingsDep) -> Response:
    """Prometheus text format: HTTP requests (of every gateway process), plus job/data set counts,
    stage durations and cache hits shared by all workers through Redis. Counts span every
    tenant: served with the metrics key (``ISA_METRICS_KEY``), or, without one, only to
    the loopback interface."""
    _check_metrics_access(request, settings.metrics_key)
    shared = CollectorRegistry()
    g = GaugeMetricFamily("isa_jobs", "Jobs by status", labels=["status"])
    for s, n in sorted(jobs.counts().items()):
        g.add_metric([s], n)
    d = GaugeMetricFamily("isa_datasets", "Data sets by status", labels=["status"])
    for s, n in sorted(datasets.counts().items()):
        d.add_metric([s], n)
    values = store.all()
    stage_sum = CounterMetricFamily("isa_stage_seconds", "Seconds spent per stage",
                                    labels=["stage"])
    stage_count = CounterMetricFamily("isa_stage_runs", "Stage executions", labels=["stage"])
    cache = CounterMetricFamily("isa_cache_events", "Cache hits and misses",
                                labels=["cache", "outcome"])
    for k, v in sorted(values.items()):
        if k.startswith("stage_seconds_sum:"):
            stage_sum.add_metric([k.split(":", 1)[1]], v)
        elif k.startswith("stage_seconds_count:"):
            stage_count.add_metric([k.split(":", 1)[1]], v)
        elif k.endswith(("_cache_hits", "_cache_misses")):
            name, outcome = k.rsplit("_cache_", 1)
            cache.add_metric([name, outcome], v)

    class _Shared:
        def collect(self):  # noqa: ANN202
            return [g, d, stage_sum, stage_count, cache]

    shared.register(_Shared())  # type: ignore[arg-type]
    body = generate_latest(http_registry()) + generate_latest(shared)
    return Response(body, media_type=CONTENT_TYPE_LATEST)
