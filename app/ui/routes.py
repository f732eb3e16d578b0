"""/ui — the browser dashboard: server-rendered HTML (Jinja2, autoescaped), no front-end
build step and no script. Data sets with their validation report, jobs with live status
(a job page reloads itself until the job ends), report plots, and a subset browser.

Authentication is the API's: the login form takes an API key, checks it as the API does
(``tenant_of_key``) and answers with a session cookie — ``<issued>.<HMAC-SHA256 keyed by
the API key>``, HttpOnly, SameSite=Strict, Secure over https, for ``SESSION_TTL_S``. The
key itself is never stored in the browser; rotating it ends its sessions. Every page
resolves its tenant from that cookie and reads the stores with it, so another tenant's
record answers 404 exactly like a missing one. Forms are protected against cross-site
requests twice: the cookie is SameSite=Strict, and every POST must carry an Origin (or
Referer) of this host.

Forms create records through the API's own route functions (``upload_dataset``,
``create_job``, ``cancel_job``), so every rule and quota is the API's.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import math
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote, urlsplit

from fastapi import APIRouter, Depends, FastAPI, Query, Request, Response
from fastapi.responses import HTMLResponse, RedirectResponse, StreamingResponse
from jinja2 import Environment, FileSystemLoader, Undefined
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile

from app.api.deps import (
    Artifacts,
    Datasets,
    Idempotency,
    Jobs,
    SettingsDep,
    tenant_of_key,
)
from app.api.errors import ApiError
from app.api.routes.datasets import upload_dataset
from app.api.routes.jobs import cancel_job, create_job
from core.artifacts import SCORES, ArtifactStore, Keys, result_format
from core.contract import job_public, open_dataset, parse_job_request
from core.records import TERMINAL
from core.settings import Settings
from isa.errors import EngineError
from isa.ingest.readers import FILE_FORMATS
from isa.ingest.records import render_text
from isa.ingest.shapes import SHAPES
from isa.select.budget import Budget

logger = logging.getLogger("isa.ui")

SESSION_COOKIE = "isa_ui_session"
#: a session lasts this long (the cookie too); then the key is asked for again
SESSION_TTL_S = 12 * 3600
#: kept rows per page of the subset browser
PAGE_ROWS = 50
#: characters of each text the subset browser shows
PREVIEW_CHARS = 300
#: records listed on the front page (the newest)
LIST_LIMIT = 50
#: a page whose record is still changing reloads itself after this many seconds
REFRESH_S = 2
LIVE_JOB = ("queued", "running", "cancelling")
LIVE_DATASET = ("uploaded", "validating")
#: columns of scores.parquet that are not the method's own per-row details
_SCORE_BASE = ("row_id", "item", "source_row", "score", "rank", "selected")
_HEADERS = {
    # no script, no foreign origin: styles inline, images (plots) from here only
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; "
    "img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}

router = APIRouter(prefix="/ui", include_in_schema=False)


# --- rendering ---------------------------------------------------------------------------


def _when(ts: float | None) -> str:
    if ts is None or isinstance(ts, Undefined):
        return "—"
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _cell(value: Any) -> str:
    if value is None or isinstance(value, Undefined) or (
            isinstance(value, float) and math.isnan(value)):
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, dict | list):
        return json.dumps(value, ensure_ascii=False, default=str)
    return str(value)


def _budget(value: Any) -> str:
    if isinstance(value, dict) and value.get("fraction") is not None:
        return f"{value['fraction'] * 100:g}%"
    if isinstance(value, dict) and value.get("count") is not None:
        return f"{value['count']:,} rows"
    return _cell(value)


def _pretty(value: Any) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False, default=str)


_env = Environment(loader=FileSystemLoader(str(Path(__file__).parent / "templates")),
                   autoescape=True, trim_blocks=True, lstrip_blocks=True)
_env.filters.update(when=_when, cell=_cell, pretty=_pretty, budget=_budget)


def _page(name: str, status_code: int = 200, **context: Any) -> HTMLResponse:
    html = _env.get_template(name).render(**context)
    return HTMLResponse(html, status_code=status_code, headers=_HEADERS)


class UiError(Exception):
    """Answered with the error page (``status``)."""

    def __init__(self, status: int, title: str, message: str) -> None:
        super().__init__(message)
        self.status, self.title, self.message = status, title, message


class LoginRequired(Exception):
    """No valid session: answered with a redirect to the login form."""

    def __init__(self, next_path: str, clear: bool) -> None:
        super().__init__(next_path)
        self.next_path, self.clear = next_path, clear


def install(app: FastAPI) -> None:
    """Mount the dashboard on ``app``."""
    app.include_router(router)

    @app.exception_handler(UiError)
    async def _ui_error(_: Request, exc: UiError) -> HTMLResponse:
        return _page("error.html", exc.status, title=exc.title, message=exc.message,
                     tenant=None)

    @app.exception_handler(LoginRequired)
    async def _login(request: Request, exc: LoginRequired) -> RedirectResponse:
        response = RedirectResponse(f"/ui/login?next={quote(exc.next_path)}", status_code=303)
        if exc.clear:
            _clear_session(request, response)
        return response


# --- sessions ----------------------------------------------------------------------------


def _session_mac(key: str, issued: int) -> str:
    return hmac.new(key.encode(), f"isa-ui-session:{issued}".encode(),
                    hashlib.sha256).hexdigest()


def session_token(key: str, issued: int | None = None) -> str:
    """A session for the holder of API key ``key``: it names no key and no tenant."""
    issued = int(time.time()) if issued is None else issued
    return f"{issued}.{_session_mac(key, issued)}"


def tenant_of_session(settings: Settings, token: str) -> str | None:
    """The tenant whose API key signed ``token``, if it is still valid."""
    issued_s, _, mac = token.partition(".")
    if not issued_s.isdigit() or len(issued_s) > 12 or not mac:
        return None
    issued = int(issued_s)
    if not -60 <= time.time() - issued <= SESSION_TTL_S:
        return None
    found = None
    for known, tenant in settings.tenants_by_key().items():
        if hmac.compare_digest(_session_mac(known, issued).encode(), mac.encode()) \
                and found is None:
            found = tenant
    return found


def _secure(request: Request) -> bool:
    return request.url.scheme == "https"


def _clear_session(request: Request, response: Response) -> None:
    response.delete_cookie(SESSION_COOKIE, path="/ui", secure=_secure(request),
                           httponly=True, samesite="strict")


async def ui_tenant(request: Request, settings: SettingsDep) -> str:
    """The tenant of the request's session cookie, else a redirect to the login form."""
    token = request.cookies.get(SESSION_COOKIE)
    tenant = tenant_of_session(settings, token) if token else None
    if tenant is None:
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        raise LoginRequired(target if request.method == "GET" else "/ui", clear=bool(token))
    return tenant


UiTenant = Annotated[str, Depends(ui_tenant)]


async def same_origin(request: Request) -> None:
    """Refuse a form POST that a page of another site made the browser send."""
    source = request.headers.get("origin") or request.headers.get("referer")
    host = request.headers.get("host", "")
    try:
        origin = urlsplit(source).netloc.lower() if source and source != "null" else None
    except ValueError:  # not a URL at all ("Invalid IPv6 URL"): no origin we know
        origin = None
    if origin is None or origin != host.lower():
        raise UiError(403, "Forbidden", "this form must be sent from the dashboard's own "
                      "pages; a request from another site is refused")


SameOrigin = Depends(same_origin)


def _safe_next(target: str | None) -> str:
    """A redirect target inside the dashboard, never another site."""
    if target and (target == "/ui" or target.startswith("/ui/")) and "\\" not in target \
            and not any(ord(c) < 32 for c in target):
        return target
    return "/ui"


# --- login -------------------------------------------------------------------------------


@router.get("/login")
def login_form(next: Annotated[str | None, Query(max_length=2000)] = None) -> HTMLResponse:
    return _page("login.html", next=_safe_next(next), error=None, tenant=None)


@router.post("/login", dependencies=[SameOrigin])
async def login(request: Request, settings: SettingsDep) -> Response:
    form = await request.form()
    key = str(form.get("api_key") or "").strip()
    target = _safe_next(str(form.get("next") or ""))
    tenant = tenant_of_key(settings, key) if key else None
    if tenant is None:
        return _page("login.html", 401, next=target, tenant=None,
                     error="That API key is not valid." if key else "Enter an API key.")
    response = RedirectResponse(target, status_code=303)
    response.set_cookie(SESSION_COOKIE, session_token(key), max_age=SESSION_TTL_S,
                        path="/ui", httponly=True, samesite="strict",
                        secure=_secure(request))
    return response


@router.api_route("/logout", methods=["GET", "POST"])
def logout(request: Request) -> RedirectResponse:
    response = RedirectResponse("/ui/login", status_code=303)
    _clear_session(request, response)
    return response


# --- pages -------------------------------------------------------------------------------


def _index(tenant: str, datasets: Datasets, jobs: Jobs, *, status_code: int = 200,
           error: str | None = None) -> HTMLResponse:
    ds_page = datasets.list(tenant, limit=LIST_LIMIT)
    job_page = jobs.list(tenant, limit=LIST_LIMIT)
    return _page("index.html", status_code, tenant=tenant, datasets=ds_page.records,
                 datasets_count=ds_page.count, jobs=[_job_view(d) for d in job_page.records],
                 jobs_count=job_page.count, shapes=SHAPES, formats=FILE_FORMATS, error=error)


@router.get("")
def index(tenant: UiTenant, datasets: Datasets, jobs: Jobs) -> HTMLResponse:
    return _index(tenant, datasets, jobs)


@router.post("/datasets", dependencies=[SameOrigin])
async def upload(request: Request, tenant: UiTenant, datasets: Datasets, jobs: Jobs,
                 artifacts: Artifacts, settings: SettingsDep) -> Response:
    """The upload form, through the API's own ``upload_dataset``."""
    form = await request.form()
    file = form.get("file")
    shape = str(form.get("shape") or "") or None
    file_format = str(form.get("format") or "") or None
    on_invalid = "skip" if form.get("on_invalid") == "skip" else "fail"
    error = None
    if not isinstance(file, UploadFile) or not file.filename:
        error = "Choose a file to upload."
    elif shape is not None and shape not in SHAPES:
        error = f"Unknown shape {shape!r}."
    elif file_format is not None and file_format not in FILE_FORMATS:
        error = f"Unknown format {file_format!r}."
    if error is not None:
        return await run_in_threadpool(_index, tenant, datasets, jobs, status_code=422,
                                       error=error)
    try:
        doc = await upload_dataset(
            request=request, tenant=tenant, datasets=datasets, artifacts=artifacts,
            settings=settings, file=file, format=file_format, shape=shape,  # type: ignore[arg-type]
            column_map=None, id_field=None, on_invalid=on_invalid)
    except ApiError as exc:
        return await run_in_threadpool(_index, tenant, datasets, jobs,
                                       status_code=exc.status, error=exc.message)
    return RedirectResponse(f"/ui/datasets/{quote(doc.id)}", status_code=303)


def _dataset(datasets: Datasets, dataset_id: str, tenant: str) -> dict[str, Any]:
    doc = datasets.get(dataset_id, tenant)
    if doc is None:  # another tenant's data set reads exactly like a missing one
        raise UiError(404, "Not found", f"There is no data set {dataset_id!r}.")
    return doc


def _dataset_page(tenant: str, doc: dict[str, Any], jobs: Jobs, *, status_code: int = 200,
                  error: str | None = None, form: dict[str, str] | None = None
                  ) -> HTMLResponse:
    from isa.select import METHODS  # the registry (numpy only), as create_job reads it

    own = [_job_view(d) for d in jobs.list(tenant, limit=200).records
           if doc["id"] in (d["request"].get("dataset_id"), d["request"].get("eval_dataset_id"))]
    return _page("dataset.html", status_code, tenant=tenant, ds=doc, jobs=own,
                 refresh=REFRESH_S if doc["status"] in LIVE_DATASET else None,
                 methods={n: METHODS[n].summary for n in sorted(METHODS)}, error=error,
                 form=form or {"method": "isa", "budget": "5%", "max_seq_length": ""})


@router.get("/datasets/{dataset_id}")
def dataset_page(dataset_id: str, tenant: UiTenant, datasets: Datasets,
                 jobs: Jobs) -> HTMLResponse:
    return _dataset_page(tenant, _dataset(datasets, dataset_id, tenant), jobs)


def _select_request(dataset_id: str, form: dict[str, str]) -> Any:
    """The form as the API's job request (its validation, its messages)."""
    request: dict[str, Any] = {
        "type": "select", "dataset_id": dataset_id, "method": form["method"] or "isa",
        "budget": Budget.parse(form["budget"] or "").to_dict()}
    if form["max_seq_length"]:
        try:
            request["encoder"] = {"max_seq_length": int(form["max_seq_length"])}
        except ValueError as exc:
            raise ValueError("max_seq_length must be a whole number") from exc
    return parse_job_request(request)


def _start_job(dataset_id: str, form: dict[str, str], tenant: str, jobs: Jobs,
               datasets: Datasets, idem: Idempotency, settings: Settings) -> Response:
    doc = _dataset(datasets, dataset_id, tenant)
    try:
        body = _select_request(dataset_id, form)
        job = create_job(body=body, response=Response(), tenant=tenant, jobs=jobs,
                         datasets=datasets, idem=idem, settings=settings,
                         idempotency_key=None)
    except ValidationError as exc:
        message = "; ".join(f"{'.'.join(str(p) for p in e['loc'][1:]) or 'request'}: "
                            f"{e['msg']}" for e in exc.errors())
        return _dataset_page(tenant, doc, jobs, status_code=422, error=message, form=form)
    except EngineError as exc:
        return _dataset_page(tenant, doc, jobs, status_code=422, error=exc.message, form=form)
    except ValueError as exc:
        return _dataset_page(tenant, doc, jobs, status_code=422, error=str(exc), form=form)
    except ApiError as exc:
        return _dataset_page(tenant, doc, jobs, status_code=exc.status, error=exc.message,
                             form=form)
    return RedirectResponse(f"/ui/jobs/{quote(job.id)}", status_code=303)


@router.post("/datasets/{dataset_id}/jobs", dependencies=[SameOrigin])
async def start_select_job(dataset_id: str, request: Request, tenant: UiTenant, jobs: Jobs,
                           datasets: Datasets, idem: Idempotency,
                           settings: SettingsDep) -> Response:
    """The "start a select job" form, through the API's own ``create_job``."""
    data = await request.form()
    form = {k: str(data.get(k) or "").strip()[:100]
            for k in ("method", "budget", "max_seq_length")}
    return await run_in_threadpool(_start_job, dataset_id, form, tenant, jobs, datasets,
                                   idem, settings)


def _job(jobs: Jobs, job_id: str, tenant: str) -> dict[str, Any]:
    doc = jobs.get(job_id, tenant)
    if doc is None:  # another tenant's job reads exactly like a missing one
        raise UiError(404, "Not found", f"There is no job {job_id!r}.")
    return doc


def _job_view(doc: dict[str, Any]) -> dict[str, Any]:
    """The job as the API shows it (``job_public``), with what the pages add."""
    view = job_public(doc).model_dump()
    done, total = view["progress"]["done"], view["progress"]["total"]
    view["live"] = view["status"] in LIVE_JOB
    view["percent"] = 100 * min(done, total) / total if total else (
        100.0 if view["status"] == "succeeded" else 0.0)
    return view


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
    details = [c for c in columns if c not in _SCORE_BASE]
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
    view = _job_view(doc)
    return _page("job.html", tenant=tenant, job=view, files=files,
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
        **_HEADERS, "Content-Disposition": f'{disposition}; filename="{filename}"',
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
