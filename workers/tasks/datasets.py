"""Validate an uploaded data set: read it through the library, record the report."""

from __future__ import annotations

import time
from urllib.parse import unquote_plus

from core.artifacts import Keys
from core.celery_app import TASK_VALIDATE, celery_app
from core.contract import open_dataset
from core.imports import ImportTooLarge, copy_url, query_key
from core.row_index import RowIndexWriter, StatsCollector
from core.row_index import key as row_index_key
from isa.errors import EngineError
from workers.context import WorkerContext, context
from workers.lifecycle import claimable_from
from workers.redact import scrub
from workers.supervisor import heartbeat


@celery_app.task(name=TASK_VALIDATE)
def validate_dataset(dataset_id: str, resume: bool = False) -> str:
    ctx = context()
    ds = ctx.datasets.get(dataset_id)
    if ds is None:
        return "missing"
    only = claimable_from(ctx, ctx.datasets, dataset_id, validate_dataset, resume, "uploaded")
    moved, prev = ctx.datasets.transition(dataset_id, "validating", only_from=only)
    if not moved:
        return prev
    with heartbeat(ctx.datasets, dataset_id, ctx.settings.heartbeat_interval_s):
        if ds.get("source_url") and not ctx.artifacts.exists(ds["artifact"]):
            ds = _import(ctx, dataset_id, ds)
            if ds is None:
                return "invalid"
        return _validate(ctx, dataset_id, ds)


def _import(ctx: WorkerContext, dataset_id: str, ds: dict) -> dict | None:
    """Read an imported data set's URL into the artifact store (the record, updated with
    its size and digest), or fail the data set with a clear code (None)."""
    s = ctx.settings
    room = s.max_stored_bytes_per_tenant - ctx.datasets.stored_bytes(ds["tenant"])
    limit = max(0, min(s.max_upload_bytes, room))
    # a presigned URL's query string waits in a key of its own, never in the record
    secret = ctx.datasets.r.get(query_key(ctx.datasets.prefix, dataset_id))
    url = ds["source_url"] + (f"?{secret}" if secret else "")
    try:
        with ctx.artifacts.open_write(ds["artifact"]) as out:
            size, sha = copy_url(url, out, s, limit, hub=ds.get("hub"))
    except ImportTooLarge:
        error = {"code": "upload_too_large", "message": f"the file at the URL is larger "
                 f"than the {limit:,} bytes allowed", "details": {"limit": limit}}
    except EngineError as exc:
        error = exc.to_dict()
    except Exception as exc:  # noqa: BLE001 - a missing object, a refused connection
        text = scrub(str(exc), _hidden(secret))  # before the cut: no half secret shows
        error = {"code": "import_failed", "message": f"could not read the URL: "
                 f"{type(exc).__name__}: {text[:300]}", "details": {}}
    else:
        # read (or failed for good, below): a resent task finds the file, not the URL
        ctx.datasets.r.delete(query_key(ctx.datasets.prefix, dataset_id))
        ctx.datasets.set_size(dataset_id, ds["tenant"], size)
        ctx.datasets.update(dataset_id, sha256=sha)
        return {**ds, "size_bytes": size, "sha256": sha}
    ctx.artifacts.delete_prefix(Keys.dataset(dataset_id))  # no half-read file stays
    # every branch: an EngineError's message may name the URL too (a refused host)
    ctx.datasets.transition(dataset_id, "invalid", error=scrub(error, _hidden(secret)))
    ctx.datasets.r.delete(query_key(ctx.datasets.prefix, dataset_id))
    return None


def _hidden(query: str | None) -> dict[str, str]:
    """What of a presigned URL's query string an error must not show, each replaced by
    "…": the whole query, then each value long enough to be a secret (as written and
    percent-decoded: a message may quote either), longest first."""
    if not query:
        return {}
    values = {query}
    for part in query.split("&"):
        value = part.split("=", 1)[-1]
        values |= {value, unquote_plus(value)}
    return {v: "…" for v in sorted(values, key=len, reverse=True) if len(v) >= 8}


def _validate(ctx: WorkerContext, dataset_id: str, ds: dict) -> str:
    t = time.perf_counter()
    # reports and errors name the file as it was uploaded, never its server path
    public = {str(ctx.artifacts.local_path(ds["artifact"])): ds["filename"]}
    data = None
    stats = StatsCollector()
    try:
        # opening checks the read options too (an unknown shape, a bad column_map)
        data = open_dataset(ds, ctx.artifacts, ctx.settings)
        # checked at every record read, skipped ones too (validation_time_exceeded)
        data.time_budget_s = ctx.settings.max_validation_s
        # the one pass that reads every row also writes the row index the previews and
        # the dashboard read (core/row_index.py); atomic: an invalid file leaves none
        with ctx.artifacts.open_write(row_index_key(dataset_id)) as fh:
            index = RowIndexWriter(fh)
            try:
                for ex in data:
                    index.add(ex)
                    stats.add(ex)
            finally:  # closed while its file is open (a failed file is then discarded)
                index.close()
    except EngineError as exc:
        _drop_index(ctx, dataset_id)
        report = scrub(data.report.to_dict(), public) if data is not None else None
        ctx.datasets.transition(dataset_id, "invalid", error=scrub(exc.to_dict(), public),
                                report=report, rows_read=report["rows_read"] if report else 0)
        return "invalid"
    except Exception as exc:  # never let a bad file crash the worker
        _drop_index(ctx, dataset_id)
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
                            rows_skipped=report["rows_skipped"],
                            examples=report.get("examples", report["rows_valid"]),
                            stats=stats.to_dict())
    return "ready"


def _drop_index(ctx: WorkerContext, dataset_id: str) -> None:
    """An invalid data set keeps no row index (a resent validation may have left one)."""
    ctx.artifacts.delete_prefix(row_index_key(dataset_id))
