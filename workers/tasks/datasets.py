"""Validate an uploaded data set: read it through the engine, record the report."""

from __future__ import annotations

import time

from app.core.celery_app import TASK_VALIDATE, celery_app
from workers.engine import EngineError, PreferenceFile
from workers.tasks.context import context


def open_dataset(ds: dict, max_rows: int | None = None) -> PreferenceFile:
    """The engine's view of a data set record's file with the options it was uploaded with."""
    ctx = context()
    opts = ds.get("options") or {}
    return PreferenceFile(ctx.artifacts.local_path(ds["artifact"]),
                          file_format=opts.get("format"), shape=opts.get("shape"),
                          column_map=opts.get("column_map"), id_field=opts.get("id_field"),
                          on_invalid=opts.get("on_invalid", "fail"), max_rows=max_rows)


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
    data = open_dataset(ds, max_rows=ctx.settings.max_rows)
    try:
        for _ in data:
            pass
    except EngineError as exc:
        report = data.report.to_dict()
        ctx.datasets.transition(dataset_id, "invalid", error=exc.to_dict(), report=report,
                                rows_read=report["rows_read"])
        return "invalid"
    except Exception as exc:  # never let a bad file crash the worker
        ctx.datasets.transition(dataset_id, "invalid", error={
            "code": "unreadable", "message": f"the file could not be read: {exc}",
            "details": {}})
        return "invalid"
    finally:
        ctx.metrics.observe_stage("validating", time.perf_counter() - t)
    report = data.report.to_dict()
    ctx.datasets.transition(dataset_id, "ready", report=report, shape=report["shape"],
                            format=report["format"], rows_read=report["rows_read"],
                            rows_valid=report["rows_valid"],
                            rows_skipped=report["rows_skipped"])
    return "ready"
