"""Dashboard pages of jobs: live status (the page reloads itself until the job ends), the
report's plot, result downloads, the cancel button (through the API's ``cancel_job``), and
a select job's subset browser (kept rows by rank, with their texts)."""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Query
from fastapi.responses import HTMLResponse, RedirectResponse, StreamingResponse

from app.api.deps import Artifacts, Datasets, Jobs, SettingsDep
from app.api.errors import ApiError
from app.api.routes.jobs import cancel_job
from app.ui.render import (
    HEADERS,
    PAGE_ROWS,
    PREVIEW_CHARS,
    REFRESH_S,
    SCORE_BASE,
    UiError,
    html_page,
    job_view,
)
from app.ui.session import SameOrigin, UiTenant
from core import presence
from core.artifacts import SCORES, ArtifactStore, Keys, result_format
from core.contract import open_dataset
from core.records import TERMINAL
from core.settings import Settings
from isa.ingest.records import render_text

logger = logging.getLogger("isa.ui")
#: events a job page lists (a job has a few dozen; the API pages through all of them)
EVENTS_SHOWN = 200
router = APIRouter(prefix="/ui", include_in_schema=False)


def _job(jobs: Jobs, job_id: str, tenant: str) -> dict[str, Any]:
    doc = jobs.get(job_id, tenant)
    if doc is None:  # another tenant's job reads exactly like a missing one
        raise UiError(404, "Not found", f"There is no job {job_id!r}.")
    return doc


def _subset(artifacts: ArtifactStore, settings: Settings, datasets: Datasets, tenant: str,
            job: dict[str, Any], page: int) -> dict[str, Any]:
    """One page of a select job's kept rows, by rank, with their texts cut short."""
    import pyarrow.parquet as pq  # only here: the pages that list jobs never need it

    with artifacts.open_read(Keys.job_file(job["id"], SCORES.filename)) as fh:
        table = pq.read_table(fh, filters=[("selected", "=", True)])
    table = table.sort_by("rank")
    total = table.num_rows
    pages = max(1, math.ceil(total / PAGE_ROWS))
    page = min(max(page, 1), pages)
    rows = table.slice((page - 1) * PAGE_ROWS, PAGE_ROWS).to_pylist()
    columns = table.column_names
    details = [c for c in columns if c not in SCORE_BASE]
    previews, preview_error = {}, None
    try:
        previews = _previews(datasets.get(job["request"].get("dataset_id", ""), tenant),
                             artifacts, settings, {r["row_id"] for r in rows})
    except Exception:  # noqa: BLE001 - the scores still show without the texts
        logger.exception("subset preview failed for job %s", job["id"])
        preview_error = "The rows' texts could not be read."
    return {"rows": rows, "total": total, "page": page, "pages": pages,
            "item": "item" in columns, "details": details, "previews": previews,
            "preview_error": preview_error}


def _previews(ds: dict[str, Any] | None, artifacts: ArtifactStore, settings: Settings,
              row_ids: set[str]) -> dict[str, dict[str, str]]:
    """The texts of ``row_ids`` (one pass over the data set, stopped once all are found)."""
    out: dict[str, dict[str, str]] = {}
    if ds is None or ds["status"] != "ready" or not row_ids:
        return out
    for ex in open_dataset(ds, artifacts, settings):
        if ex.row_id in row_ids and ex.row_id not in out:
            texts = {k: _cut(render_text(v)) for k in ("prompt", "chosen", "rejected",
                                                        "completion")
                     if (v := getattr(ex, k)) is not None}
            if ex.label is not None:
                texts["label"] = "desirable" if ex.label else "undesirable"
            out[ex.row_id] = texts
            if len(out) == len(row_ids):
                break
    return out


def _cut(text: str) -> str:
    """One line (whitespace runs collapsed), at most ``PREVIEW_CHARS`` characters."""
    text = " ".join(text.split())
    return text if len(text) <= PREVIEW_CHARS else text[:PREVIEW_CHARS] + "…"


@router.get("/jobs/{job_id}")
def job_page(job_id: str, tenant: UiTenant, jobs: Jobs, datasets: Datasets,
             artifacts: Artifacts, settings: SettingsDep,
             page: Annotated[int, Query(ge=1, le=10**9)] = 1) -> HTMLResponse:
    doc = _job(jobs, job_id, tenant)
    result = doc.get("result") or {}
    files = list(result.get("files") or {})  # names; the pages link to their own routes
    subset = None
    if doc["type"] == "select" and doc["status"] == "succeeded" and SCORES.name in files:
        subset = _subset(artifacts, settings, datasets, tenant, doc, page)
    # as GET /v1/jobs/{id} says it: no live worker serves the job's queue
    waiting = presence.job_waiting_since(jobs.r, settings.key_prefix, doc,
                                         settings.default_queue, settings.stale_after_s)
    view = job_view(doc, waiting)
    events, more = jobs.events(job_id, limit=EVENTS_SHOWN)
    return html_page("job.html", tenant=tenant, job=view, files=files, events=events,
                     more_events=more,
                     summary={k: v for k, v in result.items() if k != "files"},
                     plot="png" in files, subset=subset,
                     refresh=REFRESH_S if view["live"] else None,
                     can_cancel=doc["status"] not in TERMINAL)


@router.post("/jobs/{job_id}/cancel", dependencies=[SameOrigin])
def cancel(job_id: str, tenant: UiTenant, jobs: Jobs) -> RedirectResponse:
    """The cancel button, through the API's own ``cancel_job``."""
    _job(jobs, job_id, tenant)
    try:
        cancel_job(job_id=job_id, tenant=tenant, jobs=jobs)
    except ApiError as exc:
        if exc.status != 409:  # 409: it ended meanwhile; the page shows how
            raise UiError(exc.status, "Cannot cancel", exc.message) from exc
    return RedirectResponse(f"/ui/jobs/{quote(job_id)}", status_code=303)


def _file(job_id: str, name: str, tenant: str, jobs: Jobs, artifacts: ArtifactStore,
          inline: bool) -> StreamingResponse:
    doc = _job(jobs, job_id, tenant)
    files = (doc.get("result") or {}).get("files") or {}
    fmt = result_format(doc["type"], name)
    key = Keys.job_file(job_id, fmt.filename) if fmt is not None else None
    if fmt is None or name not in files or key is None or not artifacts.exists(key):
        raise UiError(404, "Not found", f"Job {job_id!r} has no {name!r} file.")
    filename = f"{job_id}-{name}" + "".join(Path(fmt.filename).suffixes)

    def chunks():  # noqa: ANN202
        with artifacts.open_read(key) as fh:
            while block := fh.read(1 << 20):
                yield block

    disposition = "inline" if inline else "attachment"
    return StreamingResponse(chunks(), media_type=fmt.media_type, headers={
        **HEADERS, "Content-Disposition": f'{disposition}; filename="{filename}"',
        "Content-Length": str(artifacts.size(key))})


@router.get("/jobs/{job_id}/plot.png")
def job_plot(job_id: str, tenant: UiTenant, jobs: Jobs,
             artifacts: Artifacts) -> StreamingResponse:
    """The plot of an evaluate, curve or align job (for the job page's <img>)."""
    return _file(job_id, "png", tenant, jobs, artifacts, inline=True)


@router.get("/jobs/{job_id}/files/{name}")
def job_download(job_id: str, name: str, tenant: UiTenant, jobs: Jobs,
                 artifacts: Artifacts) -> StreamingResponse:
    """A result file of a finished job, as a download."""
    return _file(job_id, name, tenant, jobs, artifacts, inline=False)
