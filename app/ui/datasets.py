"""Dashboard pages of data sets: the front page (data sets and jobs, the upload form), a
data set with its validation report and the job forms (app.ui.forms). Forms go through
the API's own steps (``begin_upload``/``finish_upload``, ``create_job``): every rule and
quota is the API's."""

from __future__ import annotations

from typing import Annotated, Any, Literal
from urllib.parse import quote

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import HTMLResponse, RedirectResponse
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile

from app.api.deps import (
    Artifacts,
    DatasetIdempotency,
    Datasets,
    Idempotency,
    Jobs,
    SettingsDep,
)
from app.api.errors import ApiError
from app.api.routes.datasets import begin_upload, delete_dataset, finish_upload
from app.api.routes.jobs import create_job
from app.api.uploads import upload_options
from app.ui import forms
from app.ui.render import LIST_LIMIT, LIVE_DATASET, REFRESH_S, UiError, html_page, job_view
from app.ui.session import SameOrigin, UiTenant
from core.records import DATASET_STATES, JOB_STATES, InvalidCursor
from core.search import search_page
from core.settings import Settings
from isa.errors import EngineError
from isa.ingest.readers import FILE_FORMATS
from isa.ingest.shapes import SHAPES

router = APIRouter(prefix="/ui", include_in_schema=False)


def _index(tenant: str, datasets: Datasets, jobs: Jobs, *, status_code: int = 200,
           error: str | None = None, view: dict[str, str | None] | None = None
           ) -> HTMLResponse:
    view = view or {}
    try:  # pages by cursor (the API's), each list filtered by status on its own
        ds_where = {"status": view.get("ds_status")}
        if view.get("ds_filename"):  # part of the name (as GET /v1/datasets?filename=)
            ds_page = search_page(datasets, tenant, view["ds_filename"], limit=LIST_LIMIT,
                                  after=view.get("ds_after"), where=ds_where)
        else:
            ds_page = datasets.list(tenant, limit=LIST_LIMIT, after=view.get("ds_after"),
                                    where=ds_where)
        job_page = jobs.list(tenant, limit=LIST_LIMIT, after=view.get("job_after"),
                             where={"status": view.get("job_status")})
    except InvalidCursor:
        raise UiError(400, "Bad page", "That page link is not one this dashboard made."
                      ) from None
    return html_page("index.html", status_code, tenant=tenant, datasets=ds_page.records,
                     datasets_count=ds_page.count, datasets_next=ds_page.next_after,
                     jobs=[job_view(d) for d in job_page.records], jobs_count=job_page.count,
                     jobs_next=job_page.next_after, view=view, dataset_states=DATASET_STATES,
                     job_states=JOB_STATES, shapes=SHAPES, formats=FILE_FORMATS, error=error)


@router.get("")
def index(tenant: UiTenant, datasets: Datasets, jobs: Jobs,
          # "": the filter form's "any"
          ds_status: Annotated[Literal[("", *DATASET_STATES)] | None, Query()] = None,  # type: ignore[valid-type]
          job_status: Annotated[Literal[("", *JOB_STATES)] | None, Query()] = None,  # type: ignore[valid-type]
          ds_filename: Annotated[str | None, Query(max_length=255)] = None,
          ds_after: Annotated[str | None, Query(max_length=256)] = None,
          job_after: Annotated[str | None, Query(max_length=256)] = None) -> HTMLResponse:
    return _index(tenant, datasets, jobs, view={
        "ds_status": ds_status or None, "job_status": job_status or None, "ds_after": ds_after,
        "job_after": job_after, "ds_filename": (ds_filename or "").strip() or None})


@router.post("/datasets/{dataset_id}/delete", dependencies=[SameOrigin])
def delete(dataset_id: str, tenant: UiTenant, datasets: Datasets, jobs: Jobs,
           artifacts: Artifacts, idem: DatasetIdempotency) -> RedirectResponse:
    """The delete button, through the API's own ``delete_dataset`` (the data set and
    every job that read it)."""
    _dataset(datasets, dataset_id, tenant)
    delete_dataset(dataset_id=dataset_id, tenant=tenant, datasets=datasets,
                   artifacts=artifacts, idem=idem, jobs=jobs, keep_results=False)
    return RedirectResponse("/ui", status_code=303)


@router.post("/datasets", dependencies=[SameOrigin])
async def upload(request: Request, tenant: UiTenant, datasets: Datasets, jobs: Jobs,
                 artifacts: Artifacts, settings: SettingsDep,
                 idem: DatasetIdempotency) -> Response:
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
        # the API's own steps: the same limits, quota and validation of the options
        writer = begin_upload(request, tenant, datasets, artifacts, settings, idem, None)
        try:
            writer.open(file.filename)
            while chunk := await file.read(1 << 20):
                writer.write(chunk)
            writer.close()
            options = upload_options({k: v for k, v in (("shape", shape), (
                "format", file_format), ("on_invalid", on_invalid)) if v is not None})
        except BaseException as exc:
            writer.discard(exc)
            raise
        finally:
            await file.close()
        doc = finish_upload(Response(), writer, options, tenant, datasets, artifacts,
                            settings, idem, None)
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
                  error: str | None = None, kind: str | None = None,
                  form: dict[str, str] | None = None) -> HTMLResponse:
    """The data set's page; after a job form failed: ``error`` above form ``kind``, which
    keeps what was entered (``form``)."""
    own = [job_view(d) for d in jobs.list(tenant, limit=200).records
           if doc["id"] in (d["request"].get("dataset_id"), d["request"].get("eval_dataset_id"))]
    values: dict[str, dict[str, str]] = {k: dict(forms.INITIAL.get(k, {}))
                                         for k in forms.JOB_FORMS}
    if kind is not None:
        values[kind] = form or {}
    return html_page("dataset.html", status_code, tenant=tenant, ds=doc, jobs=own,
                     refresh=REFRESH_S if doc["status"] in LIVE_DATASET else None,
                     methods=forms.methods(), error=error, form_kind=kind, forms=values,
                     choices=forms.CHOICES, placeholders=forms.placeholders(),
                     align_fields=forms.ALIGN_FIELDS)


@router.get("/datasets/{dataset_id}")
def dataset_page(dataset_id: str, tenant: UiTenant, datasets: Datasets,
                 jobs: Jobs) -> HTMLResponse:
    return _dataset_page(tenant, _dataset(datasets, dataset_id, tenant), jobs)


def _start_job(dataset_id: str, kind: str, form: dict[str, str], tenant: str, jobs: Jobs,
               datasets: Datasets, idem: Idempotency, settings: Settings) -> Response:
    doc = _dataset(datasets, dataset_id, tenant)
    try:
        body = forms.job_request(kind, dataset_id, form)
        job = create_job(body=body, response=Response(), tenant=tenant, jobs=jobs,
                         datasets=datasets, idem=idem, settings=settings,
                         idempotency_key=None)
    except ValidationError as exc:
        status, message = 422, forms.validation_message(exc)
    except EngineError as exc:
        status, message = 422, exc.message
    except ValueError as exc:  # FormError: what the form says cannot be read
        status, message = 422, str(exc)
    except ApiError as exc:
        status, message = exc.status, exc.message
    else:
        return RedirectResponse(f"/ui/jobs/{quote(job.id)}", status_code=303)
    return _dataset_page(tenant, doc, jobs, status_code=status, error=message, kind=kind,
                         form=form)


@router.post("/datasets/{dataset_id}/jobs", dependencies=[SameOrigin])
async def start_job(dataset_id: str, request: Request, tenant: UiTenant, jobs: Jobs,
                    datasets: Datasets, idem: Idempotency, settings: SettingsDep) -> Response:
    """A job form (its ``type``: select, evaluate, curve or align), through the API's own
    ``create_job``."""
    try:
        kind, form = forms.read_form(await request.form())
    except forms.FormError as exc:
        raise UiError(422, "Bad form", str(exc)) from None
    return await run_in_threadpool(_start_job, dataset_id, kind, form, tenant, jobs,
                                   datasets, idem, settings)
