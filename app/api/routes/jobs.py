"""/v1/jobs — start, list, inspect, cancel jobs; stream their results."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Query, Response, status
from fastapi.responses import StreamingResponse

from app.api.deps import (
    Artifacts,
    AsyncJobs,
    CurrentTenant,
    Datasets,
    Idempotency,
    Jobs,
    SettingsDep,
)
from app.api.errors import ApiError, error_responses, not_found
from app.api.idempotency import claim_or_replay, released_on_failure
from app.api.pagination import (
    After,
    Limit,
    MetadataFilter,
    Offset,
    metadata_pair,
    read_job_page,
)
from app.api.polling import job_status_body, jobs_page_body
from app.api.ranges import RANGE_RESPONSES, file_response
from app.api.schemas import JobEvents, JobPublic, JobsPublic
from core.artifacts import SCORES, ArtifactStore, Keys, ResultFormat, result_format
from core.celery_app import TASK_FOR_JOB_TYPE, celery_app, gpu_queue_served
from core.contract import AlignJob, JobRequest, check_methods, job_public
from core.events import valid_event_id
from core.records import TERMINAL, new_id, now
from core.webhooks import check_callback_url
from isa.align.models import ModelRegistry
from isa.errors import ConfigError
from isa.remote.contract import JobStatus, JobType

router = APIRouter(prefix="/v1/jobs", tags=["jobs"], responses=error_responses(401, 422, 503))
#: OpenAPI links: the id a create answers with feeds the job's other operations (tools
#: such as schemathesis follow them to test sequences, client generators to chain calls)
_JOB_LINKS = {name: {"operationId": op, "parameters": {"job_id": "$response.body#/id"}}
              for name, op in (("GetJob", "get_job"), ("CancelJob", "cancel_job"),
                               ("GetResult", "get_job_result"),
                               ("GetScores", "get_job_scores"))}
_FILES = {"content": {m: {"schema": {"type": "string", "format": "binary"}} for m in (
    "application/x-ndjson", "application/vnd.apache.parquet", "application/json",
    "image/png", "application/zip")}, "description": "the file, streamed"}


@router.post("", response_model=JobPublic, status_code=status.HTTP_201_CREATED,
             operation_id="create_job",
             responses={200: {"description": "an Idempotency-Key replay",
                              "model": JobPublic, "links": _JOB_LINKS},
                        201: {"description": "the job, queued", "links": _JOB_LINKS},
                        **error_responses(400, 404, 409, 413, 429)})
def create_job(body: JobRequest, response: Response, tenant: CurrentTenant, jobs: Jobs,
               datasets: Datasets, idem: Idempotency, settings: SettingsDep,
               idempotency_key: Annotated[str | None, Header(max_length=255)] = None
               ) -> JobPublic:
    """Start a job. With an ``Idempotency-Key`` header, repeating the same request returns
    the same job (for 24 h; 409 while the first request is still creating it); the same
    key with another body answers 422."""
    # without an unset metadata: a retry across the deploy that added it keeps the first
    # request's Idempotency-Key fingerprint
    request = body.model_dump(exclude=set() if body.metadata else {"metadata"})
    try:
        check_methods(body)
        if hasattr(body, "encoder"):
            body.encoder.check_model(settings.encoder_models)
        # URLs a worker will call: public addresses only (unless the server allows more)
        if body.callback_url:
            check_callback_url(body.callback_url, settings.outbound_allowed_networks)
        if body.mlflow and body.mlflow.tracking_uri:
            check_callback_url(body.mlflow.tracking_uri, settings.outbound_allowed_networks,
                               field="mlflow.tracking_uri", code="invalid_tracking_uri")
    except ConfigError as exc:
        raise ApiError(422, exc.code, exc.message, **exc.details) from exc
    job_id = new_id("job")
    if idempotency_key is not None:
        # before the quota and the data sets' state: a replay answers the job it made
        # even when the tenant is now at its quota or the data set changed since
        existing = claim_or_replay(idem, tenant, idempotency_key, idem.fingerprint(request),
                                   job_id, lambda i: jobs.get(i, tenant))
        if existing is not None:
            response.status_code = status.HTTP_200_OK
            return job_public(existing)
    with released_on_failure(idem, tenant, idempotency_key, job_id):
        if isinstance(body, AlignJob):
            _check_align(body, tenant, jobs, settings)
        active = jobs.live_count(tenant)
        if active >= settings.max_active_jobs_per_tenant:
            raise ApiError(429, "job_quota_exceeded", f"the tenant has {active} unfinished "
                           "jobs, the most it may have at once; retry when one ends",
                           headers={"Retry-After": "30"}, active=active,
                           quota=settings.max_active_jobs_per_tenant)
        for dataset_id in body.dataset_ids():
            ds = datasets.get(dataset_id, tenant)
            if ds is None:
                raise not_found("dataset", dataset_id)
            if ds["status"] == "invalid":
                raise ApiError(409, "dataset_invalid", f"data set {dataset_id} failed "
                               "validation", error=ds.get("error"))
        claim = idem.key_of(tenant, idempotency_key) if idempotency_key is not None else None
        _enqueue(body, request, job_id, tenant, jobs, settings, claim)
    return job_public(jobs.get(job_id))  # type: ignore[arg-type]


def _enqueue(body: Any, request: dict[str, Any], job_id: str, tenant: str, jobs: Jobs,
             settings: SettingsDep, claim: str | None = None) -> None:
    """The job's record (with the Redis key of its Idempotency-Key claim, freed when the
    job is deleted), then its first task."""
    queue = body.queue or settings.default_queue
    if body.type == "align" and body.queue is None:
        queue = settings.align_queue or ("gpu" if gpu_queue_served() else "cpu")
    if queue == "gpu" and not gpu_queue_served():
        # a job sent where no worker listens would wait forever
        raise ApiError(409, "queue_unavailable", "no worker serves the 'gpu' queue now; "
                       "send the job without 'queue' (or to 'cpu')", queue=queue)
    jobs.create(tenant, job_id, "queued", {"type": body.type, "request": request,
                                           "stage": "queued", "progress_done": 0,
                                           "progress_total": 0, "queue": queue,
                                           "idempotency_claim": claim,
                                           "metadata": body.metadata or None})
    # before the task is sent: deleting one of these data sets deletes this job's results
    jobs.link_datasets(job_id, body.dataset_ids())
    try:
        celery_app.send_task(TASK_FOR_JOB_TYPE[body.type], args=(job_id,), queue=queue)
    except BaseException:  # the broker away: no job that would never run
        jobs.delete(job_id, tenant)
        raise


def _check_align(body: AlignJob, tenant: str, jobs: Jobs, settings: SettingsDep) -> None:
    names = ModelRegistry(settings.model_registry).names()  # names only; nothing is loaded
    if body.align.base_model not in names:
        raise ApiError(422, "unknown_model", f"unknown base model {body.align.base_model!r}; "
                       f"available: {', '.join(names)}")
    if body.select_job_id is not None:
        src = jobs.get(body.select_job_id, tenant)
        if src is None or src["type"] != "select":
            raise not_found("job", body.select_job_id)
        if src["status"] != "succeeded":
            raise ApiError(409, "job_not_succeeded", f"select job {body.select_job_id} is "
                           f"{src['status']}", status=src["status"])


@router.get("", response_model=JobsPublic, responses=error_responses(400),
            operation_id="list_jobs")
async def list_jobs(tenant: CurrentTenant, jobs: AsyncJobs,
                    status_: Annotated[JobStatus | None, Query(alias="status")] = None,
                    type_: Annotated[JobType | None, Query(alias="type")] = None,
                    metadata: MetadataFilter = None,
                    limit: Limit = 50, after: After = None, offset: Offset = 0) -> Response:
    """The tenant's jobs, newest first, optionally of one status and/or type, or those
    carrying one metadata pair (``metadata=key:value``, alone)."""

    page = await read_job_page(jobs, tenant, limit=limit, after=after, offset=offset,
                               where={"status": status_, "type": type_,
                                      "metadata": metadata_pair(metadata)})
    # a page by limit and offset alone is usually answered by app.api.polling before it
    # gets here; serialised once (response_model would validate the page again)
    return Response(jobs_page_body(page), media_type="application/json")


@router.get("/{job_id}", response_model=JobPublic, responses=error_responses(404),
            operation_id="get_job")
async def get_job(job_id: str, tenant: CurrentTenant, jobs: AsyncJobs,
                  settings: SettingsDep) -> Response:
    # a successful poll is usually answered by app.api.polling before it gets here; this
    # route answers the rest (errors, query strings) and documents the operation
    body = await job_status_body(jobs, settings, job_id, tenant)
    if body is None:
        raise not_found("job", job_id)
    return Response(body, media_type="application/json")


@router.get("/{job_id}/events", response_model=JobEvents, operation_id="list_job_events",
            responses=error_responses(400, 404))
def list_job_events(job_id: str, tenant: CurrentTenant, jobs: Jobs,
                    after: Annotated[str | None, Query(
                        max_length=64, description="an event's id: the events after it "
                        "(the first ones when left out)")] = None,
                    limit: Annotated[int, Query(ge=1, le=1000)] = 100) -> JobEvents:
    """What happened to the job so far, oldest first: status changes, each new stage and
    every tenth of a stage done, re-sends after a lost worker. Poll with ``after`` = the
    previous answer's ``next_after`` to follow a running job."""
    if jobs.get(job_id, tenant) is None:
        raise not_found("job", job_id)
    if after is not None and not valid_event_id(after):
        raise ApiError(400, "invalid_pagination", "`after` is not an event id (use an "
                       "event's `id` or the answer's `next_after`)", field="after")
    data, has_more = jobs.events(job_id, after=after, limit=limit)
    return JobEvents(data=data, has_more=has_more,  # type: ignore[arg-type]
                     next_after=data[-1]["id"] if data else after)


@router.post("/{job_id}/cancel", response_model=JobPublic, operation_id="cancel_job",
             responses=error_responses(400, 404, 409, 413))
def cancel_job(job_id: str, tenant: CurrentTenant, jobs: Jobs) -> JobPublic:
    """Queued jobs are cancelled at once; running ones stop at their next batch."""
    doc = jobs.get(job_id, tenant)
    if doc is None:
        raise not_found("job", job_id)
    if doc["status"] in TERMINAL:
        raise ApiError(409, "job_finished", f"the job is already {doc['status']}",
                       status=doc["status"])
    # A queued job never started: cancelled now. A running one: the worker sees
    # "cancelling" at its next batch and finishes the move to "cancelled".
    if not jobs.transition(job_id, "cancelled", only_from=("queued",), finished_at=now())[0]:
        jobs.transition(job_id, "cancelling")
    return job_public(jobs.get(job_id))  # type: ignore[arg-type]


def _stream(artifacts: ArtifactStore, job_id: str, fmt: ResultFormat, name: str,
            ranges: Ranges) -> StreamingResponse:
    # every result format is a stored file of known size: each one takes a Range
    return file_response(artifacts, Keys.job_file(job_id, fmt.filename),
                         media_type=fmt.media_type,
                         filename=name + "".join(Path(fmt.filename).suffixes),
                         range_header=ranges.range, if_range=ranges.if_range)


class Ranges:
    """The download routes' ``Range`` and ``If-Range`` headers (``app.api.ranges``)."""

    def __init__(self, range: Annotated[str | None, Header(
                     max_length=200, description="one byte range, e.g. bytes=1048576-")
                 ] = None,
                 if_range: Annotated[str | None, Header(
                     max_length=200, description="the ETag the first part came with")
                 ] = None) -> None:
        self.range, self.if_range = range, if_range


def _finished(jobs: Jobs, job_id: str, tenant: str) -> dict[str, Any]:
    doc = jobs.get(job_id, tenant)
    if doc is None:
        raise not_found("job", job_id)
    # a cancelled align job keeps (and serves) what it trained before it stopped
    if doc["status"] != "succeeded" and not (doc["status"] == "cancelled"
                                             and doc.get("result")):
        raise ApiError(409, "job_not_succeeded", f"the job is {doc['status']}",
                       status=doc["status"])
    return doc


@router.get("/{job_id}/result", response_class=StreamingResponse,
            operation_id="get_job_result",
            responses={200: _FILES, **RANGE_RESPONSES, **error_responses(404, 409, 416)})
def job_result(job_id: str, tenant: CurrentTenant, jobs: Jobs, artifacts: Artifacts,
               ranges: Annotated[Ranges, Depends()],
               format: Annotated[str | None, Query(
                   pattern="^(jsonl|parquet|trl|kto|openai|json|png|archive)$")] = None
               ) -> StreamingResponse:
    """A select job's subset: ``jsonl``/``parquet`` in the upload's own shape, or the
    ``trl``, ``kto`` and ``openai`` export shapes (JSON Lines). An evaluate or curve
    job's report: ``json`` or ``png``. An align job: ``json`` (metrics), ``png`` (training
    curves) or ``archive`` (the model or LoRA adapter folder as a zip)."""
    doc = _finished(jobs, job_id, tenant)
    name = format or ("jsonl" if doc["type"] == "select" else "json")
    files = doc["result"]["files"]
    fmt = result_format(doc["type"], name)
    if fmt is None or name not in files or fmt == SCORES:
        raise ApiError(422, "format_unavailable", f"format {name!r} does not apply to this "
                       f"job; available: {', '.join(k for k in files if k != SCORES.name)}")
    return _stream(artifacts, job_id, fmt, f"{job_id}-{name}", ranges)


@router.get("/{job_id}/scores", response_class=StreamingResponse,
            operation_id="get_job_scores",
            responses={200: {"description": "Parquet", "content": {
                "application/vnd.apache.parquet": {"schema": {"type": "string",
                                                              "format": "binary"}}}},
                       **RANGE_RESPONSES, **error_responses(404, 409, 416)})
def job_scores(job_id: str, tenant: CurrentTenant, jobs: Jobs, artifacts: Artifacts,
               ranges: Annotated[Ranges, Depends()]) -> StreamingResponse:
    """Per-row scores as Parquet: row_id, score, rank, selected and method details."""
    doc = _finished(jobs, job_id, tenant)
    if SCORES.name not in doc["result"].get("files", {}):
        raise ApiError(422, "format_unavailable", f"a {doc['type']} job has no per-row scores")
    return _stream(artifacts, job_id, SCORES, f"{job_id}-scores", ranges)
