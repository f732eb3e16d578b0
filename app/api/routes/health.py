"""/healthz, /readyz, /metrics."""

from __future__ import annotations

from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.core import CollectorRegistry, CounterMetricFamily, GaugeMetricFamily

from app.api.deps import Datasets, Jobs, MetricsStore, RedisDep
from app.metrics import REGISTRY
from core.celery_app import celery_app

router = APIRouter(tags=["health"])


@router.get("/healthz")
def healthz() -> dict[str, str]:
    """The process is up."""
    return {"status": "ok"}


@router.get("/readyz")
def readyz(r: RedisDep) -> JSONResponse:
    """Redis answers and at least one worker replies to a ping."""
    checks: dict[str, object] = {}
    try:
        checks["redis"] = bool(r.ping())
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


@router.get("/metrics")
def metrics(jobs: Jobs, datasets: Datasets, store: MetricsStore) -> Response:
    """Prometheus text format: HTTP requests of this process, plus job/data set counts,
    stage durations and cache hits shared by all workers through Redis."""
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
    body = generate_latest(REGISTRY) + generate_latest(shared)
    return Response(body, media_type=CONTENT_TYPE_LATEST)
