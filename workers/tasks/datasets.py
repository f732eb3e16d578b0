"""Validate an uploaded data set: read it through the library, record the report."""

from __future__ import annotations

import time

from core.celery_app import TASK_VALIDATE, celery_app
from core.contract import open_dataset
from isa.errors import EngineError
from workers.context import context


@celery_app.task(name=TASK_VALIDATE)
def validate_dataset(dataset_id: str) -> str:
    ctx = context()
    ds = ctx.datasets.get(dataset_id)
    if ds is None:
        return "missing"
    moved, prev = ctx.datasets.transition(dataset_id, "validating")
    if not moved:
        return prev
    t = time.perf_counter()
    data = None
    try:
        # opening checks the read options too (an unknown shape, a bad column_map)
        data = open_dataset(ds, ctx.artifacts, max_rows=ctx.settings.max_rows)
        for _ in data:
            pass
    except EngineError as exc:
        report = data.report.to_dict() if data is not None else None
        ctx.datasets.transition(dataset_id, "invalid", error=exc.to_dict(), report=report,
                                rows_read=report["rows_read"] if report else 0)
        return "invalid"
    except Exception as exc:  # never let a bad file crash the worker
        ctx.datasets.transition(dataset_id, "invalid", error={
            "code": "unreadable", "message": f"the file could not be read: {exc}",
            "details": {}})
        return "invalid"
    finally:
        ctx.metrics.observe_stage("validating", time.perf_counter() - t)
    report = data.report.to_dict()  # type: ignore[union-attr]
    ctx.datasets.transition(dataset_id, "ready", report=report, shape=report["shape"],
                            format=report["format"], rows_read=report["rows_read"],
                            rows_valid=report["rows_valid"],
                            rows_skipped=report["rows_skipped"])
    return "ready"
