"""Dashboard pages of jobs: live status (the page reloads itself until the job ends), the
report's table and plot, result downloads, the cancel button (through the API's
``cancel_job``), a select job's subset review (``app.ui.review``: kept and dropped units,
searched, filtered and sorted, side by side), and the comparison of two select jobs."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Query
from fastapi.responses import HTMLResponse, RedirectResponse, StreamingResponse

from app.api.deps import Artifacts, Datasets, Jobs, SettingsDep
from app.api.errors import ApiError
from app.api.routes.jobs import cancel_job
from app.ui.render import CELL_CHARS, HEADERS, PAGE_ROWS, REFRESH_S, UiError, html_page, job_view
from app.ui.report import report_table as _report_table
from app.ui.review import SORTS, VIEWS, ReviewQuery, compare, read_scores, review, score_histogram
from app.ui.session import SameOrigin, UiTenant
from core import presence
from core.artifacts import SCORES, ArtifactStore, Keys, result_format
from core.records import TERMINAL
from core.row_index import TEXTS, RowIndex

logger = logging.getLogger("isa.ui")
#: events a job page lists (a job has a few dozen; the API pages through all of them)
EVENTS_SHOWN = 200
router = APIRouter(prefix="/ui", include_in_schema=False)


def _job(jobs: Jobs, job_id: str, tenant: str) -> dict[str, Any]:
    doc = jobs.get(job_id, tenant)
    if doc is None:  # another tenant's job reads exactly like a missing one
        raise UiError(404, "Not found", f"There is no job {job_id!r}.")
    return doc


def _review(artifacts: ArtifactStore, datasets: Datasets, tenant: str, job: dict[str, Any],
            query: ReviewQuery) -> dict[str, Any]:
    """A select job's units as the review section shows them (``app.ui.review``)."""
    scores = read_scores(artifacts, job["id"])
    ds = datasets.get(job["request"].get("dataset_id", ""), tenant)
    index = RowIndex.if_ready(artifacts, ds)
    out = review(scores, index, query, PAGE_ROWS)
    out["histogram"] = score_histogram(scores)
    out["dataset_id"] = ds["id"] if ds else None
    out["no_index"] = ds is not None and index is None
    stats = (ds or {}).get("stats") or {}
    out["columns"] = [c for c in stats.get("columns", []) if c not in TEXTS and c != "label"]
    return out


def _query(view: str, sort: str, q: str, column: str, value: str, page: int) -> ReviewQuery:
    return ReviewQuery(view=view if view in VIEWS else "kept",  # type: ignore[arg-type]
                       sort=sort if sort in SORTS else "rank",  # type: ignore[arg-type]
                       q=q.strip(), column=column.strip(), value=value.strip(), page=page)


def _compare_candidates(jobs: Jobs, tenant: str, job: dict[str, Any]) -> list[dict[str, Any]]:
    """The tenant's other succeeded select jobs on the same data set (the newest 200)."""
    ds = job["request"].get("dataset_id")
    return [d for d in jobs.list(tenant, limit=200, where={"type": "select"}).records
            if d["id"] != job["id"] and d["status"] == "succeeded"
            and d["request"].get("dataset_id") == ds]


@router.get("/jobs/{job_id}")
def job_page(job_id: str, tenant: UiTenant, jobs: Jobs, datasets: Datasets,
             artifacts: Artifacts, settings: SettingsDep,
             page: Annotated[int, Query(ge=1, le=10**9)] = 1,
             view: Annotated[str, Query(max_length=10)] = "kept",
             sort: Annotated[str, Query(max_length=10)] = "rank",
             q: Annotated[str, Query(max_length=200)] = "",
             column: Annotated[str, Query(max_length=200)] = "",
             value: Annotated[str, Query(max_length=200)] = "") -> HTMLResponse:
    doc = _job(jobs, job_id, tenant)
    result = doc.get("result") or {}
    files = list(result.get("files") or {})  # names; the pages link to their own routes
    subset, query, others = None, _query(view, sort, q, column, value, page), []
    if doc["type"] == "select" and doc["status"] == "succeeded" and SCORES.name in files:
        subset = _review(artifacts, datasets, tenant, doc, query)
        others = _compare_candidates(jobs, tenant, doc)
    # as GET /v1/jobs/{id} says it: no live worker serves the job's queue
    waiting = presence.job_waiting_since(jobs.r, settings.key_prefix, doc,
                                         settings.default_queue, settings.stale_after_s)
    view = job_view(doc, waiting)
    events, more = jobs.events(job_id, limit=EVENTS_SHOWN)
    return html_page("job.html", tenant=tenant, job=view, files=files, events=events,
                     more_events=more,
                     summary={k: v for k, v in result.items() if k != "files"},
                     plot="png" in files, subset=subset, query=query, views=VIEWS,
                     sorts=SORTS, others=others, table=_report_table(doc, artifacts),
                     preview=CELL_CHARS,
                     refresh=REFRESH_S if view["live"] else None,
                     can_cancel=doc["status"] not in TERMINAL)


#: units each side of a comparison lists (with their texts)
COMPARE_LISTED = 20


@router.get("/jobs/{job_id}/compare")
def compare_page(job_id: str, tenant: UiTenant, jobs: Jobs, datasets: Datasets,
                 artifacts: Artifacts,
                 other: Annotated[str, Query(max_length=100)] = "") -> HTMLResponse:
    """Two select jobs on one data set: overlap, the units only one kept, and the rank
    correlation of their scores."""
    a = _job(jobs, job_id, tenant)
    b = _job(jobs, other, tenant) if other else None
    for doc in (a, b):
        if doc is None or doc["type"] != "select" or doc["status"] != "succeeded":
            raise UiError(400, "Cannot compare", "Pick two succeeded select jobs "
                          "(the job page's compare form lists them).")
    assert b is not None
    if a["request"].get("dataset_id") != b["request"].get("dataset_id"):
        raise UiError(400, "Cannot compare", "The two jobs read different data sets; a "
                      "comparison needs the same units.")
    result = compare(read_scores(artifacts, a["id"]), read_scores(artifacts, b["id"]))
    ds = datasets.get(a["request"].get("dataset_id", ""), tenant)
    index = RowIndex.if_ready(artifacts, ds)
    listed = [u for side in ("only_a", "only_b") for u in result[side][:COMPARE_LISTED]]
    texts = index.by_ids(list(dict.fromkeys(r for r, _ in listed))) if index else {}
    return html_page("compare.html", tenant=tenant, a=job_view(a), b=job_view(b), c=result,
                     texts=texts, listed=COMPARE_LISTED, preview=CELL_CHARS)


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
