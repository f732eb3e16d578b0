"""Validate an uploaded data set: read it through the library, record the report."""

from __future__ import annotations

import time

from core.celery_app import TASK_VALIDATE, celery_app
from core.contract import open_dataset
from isa.errors import EngineError
from workers.context import WorkerContext, context
from workers.redact import scrub
from workers.supervisor import heartbeat


@celery_app.task(name=TASK_VALIDATE)
def validate_dataset(dataset_id: str) -> str:
    ctx = context()
    ds = ctx.datasets.get(dataset_id)
    if ds is None:
        return "missing"
    moved, prev = ctx.datasets.transition(dataset_id, "validating")
    if not moved:
        return prev
    with heartbeat(ctx.datasets, dataset_id, ctx.settings.heartbeat_interval_s):
        return _validate(ctx, dataset_id, ds)


def _validate(ctx: WorkerContext, dataset_id: str, ds: dict) -> str:
    t = time.perf_counter()
    # reports and errors name the file as it was uploaded, never its server path
    public = {str(ctx.artifacts.local_path(ds["artifact"])): ds["filename"]}
    data = None
    try:
        # opening checks the read options too (an unknown shape, a bad column_map)
        data = open_dataset(ds, ctx.artifacts, ctx.settings)
        for _ in data:
            pass
    except EngineError as exc:
        report = scrub(data.report.to_dict(), public) if data is not None else None
        ctx.datasets.transition(dataset_id, "invalid", error=scrub(exc.to_dict(), public),
                                report=report, rows_read=report["rows_read"] if report else 0)
        return "invalid"
    except Exception as exc:  # never let a bad file crash the worker
        ctx.datasets.transition(dataset_id, "invalid", error=scrub({
            "code": "unreadable", "message": f"the file could not be read: {exc}",
            "details": {}}, public))
        return "invalid"
    finally:
        ctx.metrics.observe_stage("validating", time.perf_counter() - t)
    report = scrub(data.report.to_dict(), public)  # type: ignore[union-attr]
    ctx.datasets.transition(dataset_id, "ready", report=report, shape=report["shape"],
                            format=report["format"], rows_read=report["rows_read"],
                            rows_valid=report["rows_valid"],
                            rows_skipped=report["rows_skipped"])
    return "ready"
