"""/v1/datasets — upload (streamed to the artifact store), inspect, preview, delete."""

from __future__ import annotations

import contextlib
import hashlib
import json
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from fastapi import APIRouter, Depends, Form, Header, Query, Request, Response, UploadFile, status
from pydantic import BaseModel

from app.api.deletion import Deletion
from app.api.deps import (
    Artifacts,
    CurrentTenant,
    DatasetIdempotency,
    Datasets,
    Jobs,
    SettingsDep,
)
from app.api.errors import ApiError, error_responses, not_found
from app.api.idempotency import claim_or_replay, released_on_failure
from app.api.pagination import After, Limit, Offset, read_page
from app.api.schemas import DatasetPublic, DatasetRows, DatasetsPublic
from core.artifacts import Keys
from core.celery_app import TASK_VALIDATE, celery_app
from core.contract import COLUMN_MAP_VERSION, DatasetOptions, open_dataset
from core.imports import QUERY_TTL_S, check_import_url, file_name, query_key, without_query
from core.records import new_id
from isa.errors import ConfigError
from isa.ingest.readers import FILE_FORMATS
from isa.ingest.shapes import SHAPES
from isa.remote.contract import DatasetImport, DatasetStatus

FileFormat = Literal[FILE_FORMATS]  # type: ignore[valid-type]
Shape = Literal[SHAPES]  # type: ignore[valid-type]

router = APIRouter(prefix="/v1/datasets", tags=["datasets"],
                   responses=error_responses(401, 422, 503))
#: OpenAPI links from a created data set to its other operations
_LINKS = {name: {"operationId": op, "parameters": {"dataset_id": "$response.body#/id"}}
          for name, op in (("GetDataset", "get_dataset"), ("PreviewRows", "preview_rows"),
                           ("DeleteDataset", "delete_dataset"))}
_CHUNK = 1 << 20
#: characters of each text a preview shows (the rows can be far longer)
PREVIEW_CHARS = 2000


def _public(doc: dict[str, Any]) -> DatasetPublic:
    return DatasetPublic.model_validate(doc)


async def no_empty_choices(request: Request, _: CurrentTenant) -> None:
    """FastAPI reads an empty form field as an absent one; for a choice that would quietly
    turn ``format=`` into "detect it", so the API refuses it, as its schema says. (The
    dashboard's form, whose "detect" option is empty, calls ``upload_dataset`` itself.)
    After the API key: a request without one is answered 401 first."""
    form = await request.form()  # parsed once per request: the route reads the same
    for name, choices in (("format", FILE_FORMATS), ("shape", SHAPES),
                          ("on_invalid", ("fail", "skip")),
                          ("pairing", ("best_vs_worst", "best_vs_each"))):
        if form.get(name) == "":
            raise ApiError(422, "invalid_options", f"invalid upload options: {name} is "
                           f"empty; leave it out or give one of {', '.join(choices)}",
                           field=name)


_REPLAY = {"description": "an Idempotency-Key replay", "model": DatasetPublic, "links": _LINKS}
#: the header, as jobs take it (``app.api.idempotency``)
IdemKey = Annotated[str | None, Header(max_length=255, description="a retry with the same "
                                       "key and body answers the data set the first made")]


@router.post("", response_model=DatasetPublic, status_code=status.HTTP_201_CREATED,
             operation_id="upload_dataset", dependencies=[Depends(no_empty_choices)],
             responses={200: _REPLAY, 201: {"description": "the data set, to be validated",
                                            "links": _LINKS},
                        **error_responses(400, 409, 413, 429)})
async def upload_dataset(
    request: Request, response: Response, tenant: CurrentTenant, datasets: Datasets,
    artifacts: Artifacts, settings: SettingsDep, idem: DatasetIdempotency, file: UploadFile,
    # not "X | None": a multipart form has no null, only absent fields
    format: Annotated[FileFormat, Form()] = None,  # type: ignore[assignment]
    shape: Annotated[Shape, Form()] = None,  # type: ignore[assignment]
    column_map: Annotated[str | None, Form(
        description='JSON {"your_column": "our_field"}, e.g. {"question": "prompt"}')] = None,
    id_field: Annotated[str | None, Form()] = None,
    pairing: Annotated[Literal["best_vs_worst", "best_vs_each"] | None, Form(
        description="how a row of N rated answers (shape ranked) becomes pairs")] = None,
    on_invalid: Annotated[Literal["fail", "skip"], Form()] = "fail",
    idempotency_key: IdemKey = None,
) -> DatasetPublic:
    """Upload a preference data file; it is validated by a worker (poll ``status``). With
    an ``Idempotency-Key``, a repeat of the same file and options answers the data set the
    first request made (200, in whatever state it is; 24 h), the same key with another
    file or options 422."""
    length = request.headers.get("content-length")
    if length and int(length) > settings.max_upload_bytes + 64 * 1024:
        raise _too_large(settings.max_upload_bytes)
    # a retry of an upload whose first try is claimed: that one already counts against
    # the quota, so the quota must not refuse the retry (checked below if it creates)
    retry = idempotency_key is not None and idem.peek(tenant, idempotency_key) is not None
    used = datasets.stored_bytes(tenant)
    quota = None if retry else settings.max_stored_bytes_per_tenant
    if quota is not None and used + (int(length) if length and length.isdigit() else 0) \
            > quota + 64 * 1024:
        raise _over_quota(used, quota)
    try:
        options = DatasetOptions(format=format, shape=shape, id_field=id_field,
                                 on_invalid=on_invalid, pairing=pairing,  # type: ignore[arg-type]
                                 column_map=json.loads(column_map) if column_map else None)
    except (ValueError, TypeError) as exc:
        raise ApiError(422, "invalid_options", f"invalid upload options: {exc}") from exc
    dataset_id = new_id("ds")
    suffix = "".join(s for s in _suffixes(file.filename or "") if s)
    artifact = Keys.upload(dataset_id, suffix)
    digest, size = hashlib.sha256(), 0
    try:
        with artifacts.open_write(artifact) as out:
            while chunk := await file.read(_CHUNK):
                size += len(chunk)
                if size > settings.max_upload_bytes:
                    raise _too_large(settings.max_upload_bytes)
                if quota is not None and used + size > quota:
                    raise _over_quota(used, quota)
                digest.update(chunk)
                out.write(chunk)
    finally:
        await file.close()
    # stored without its unset (None) options: a worker of the version before, whose
    # strict model lacks a newer option (pairing), still reads what a new gateway wrote
    fields = {"filename": (file.filename or "upload")[:255], "size_bytes": size,
              "sha256": digest.hexdigest(), "artifact": artifact,
              "options": options.model_dump(exclude_none=True),
              "column_map_v": COLUMN_MAP_VERSION}
    if idempotency_key is not None:
        # the body's fingerprint: the file's bytes (their sha256), its name and the options
        # (all of them, None too: a retry across a deploy keeps the first's fingerprint)
        fingerprint = idem.fingerprint({"upload": {
            "filename": fields["filename"], "sha256": fields["sha256"],
            "options": options.model_dump()}})
        try:
            existing = claim_or_replay(idem, tenant, idempotency_key, fingerprint,
                                       dataset_id, lambda i: datasets.get(i, tenant))
        except BaseException:
            _forget(datasets, artifacts, tenant, dataset_id)
            raise
        if existing is not None:  # the file is the first request's: this copy goes
            _forget(datasets, artifacts, tenant, dataset_id)
            response.status_code = status.HTTP_200_OK
            return _public(existing)
        fields["idempotency_claim"] = idem.key_of(tenant, idempotency_key)
    with released_on_failure(idem, tenant, idempotency_key, dataset_id):
        try:
            used = datasets.stored_bytes(tenant)
            if retry and used + size > settings.max_stored_bytes_per_tenant:
                # the first try's claim was gone (expired, or that try failed): a new upload
                raise _over_quota(used, settings.max_stored_bytes_per_tenant)
            datasets.create(tenant, dataset_id, "uploaded", fields)
            celery_app.send_task(TASK_VALIDATE, args=(dataset_id,),
                                 queue=settings.default_queue)
        except BaseException:  # Redis or the broker away: leave neither a file nor a record
            _forget(datasets, artifacts, tenant, dataset_id)
            raise
    return _public(datasets.get(dataset_id))  # type: ignore[arg-type]


@router.post("/import", response_model=DatasetPublic, status_code=status.HTTP_201_CREATED,
             operation_id="import_dataset",
             responses={200: _REPLAY, 201: {"description": "the data set, to be read and "
                                            "validated", "links": _LINKS},
                        **error_responses(400, 409, 413, 429)})
def import_dataset(body: DatasetImport, response: Response, tenant: CurrentTenant,
                   datasets: Datasets, artifacts: Artifacts, settings: SettingsDep,
                   idem: DatasetIdempotency, idempotency_key: IdemKey = None) -> DatasetPublic:
    """Create a data set from a URL (``s3://``, ``gs://``, ``https://`` …) under one of the
    server's ``import_allowed_urls``; a worker reads it (same limits as an upload) and
    validates it — poll ``status``. ``Idempotency-Key`` as for an upload (the body's
    fingerprint: the URL and the options)."""
    try:
        check_import_url(body.url, settings)
    except ConfigError as exc:
        raise ApiError(422, exc.code, exc.message, **exc.details) from exc
    dataset_id = new_id("ds")
    extra: dict[str, Any] = {}
    if idempotency_key is not None:
        # before the quota: a replay answers even when the tenant is now at its quota
        existing = claim_or_replay(
            idem, tenant, idempotency_key, idem.fingerprint({"import": body.model_dump()}),
            dataset_id, lambda i: datasets.get(i, tenant))
        if existing is not None:
            response.status_code = status.HTTP_200_OK
            return _public(existing)
        extra["idempotency_claim"] = idem.key_of(tenant, idempotency_key)
    with released_on_failure(idem, tenant, idempotency_key, dataset_id):
        used = datasets.stored_bytes(tenant)
        if used >= settings.max_stored_bytes_per_tenant:
            raise _over_quota(used, settings.max_stored_bytes_per_tenant)
        name = file_name(body.url)
        suffix = "".join(s for s in _suffixes(name) if s)
        try:
            if query := urlsplit(body.url).query:  # a presigned URL: kept out of the record
                datasets.r.set(query_key(datasets.prefix, dataset_id), query, ex=QUERY_TTL_S)
            datasets.create(tenant, dataset_id, "uploaded", {
                "filename": name[:255], "size_bytes": 0, "sha256": "",
                "artifact": Keys.upload(dataset_id, suffix),
                "source_url": without_query(body.url),
                "hub": body.hub.model_dump() if body.hub else None,
                "options": DatasetOptions.model_validate(  # no None: as for an upload
                    body.model_dump(exclude={"url", "hub"})).model_dump(exclude_none=True),
                "column_map_v": COLUMN_MAP_VERSION, **extra})
            celery_app.send_task(TASK_VALIDATE, args=(dataset_id,),
                                 queue=settings.default_queue)
        except BaseException:
            _forget(datasets, artifacts, tenant, dataset_id)
            raise
    return _public(datasets.get(dataset_id))  # type: ignore[arg-type]


def _forget(datasets: Datasets, artifacts: Artifacts, tenant: str, dataset_id: str) -> None:
    # best effort: the request fails either way
    with contextlib.suppress(Exception):
        datasets.delete(dataset_id, tenant)
    with contextlib.suppress(Exception):  # an import's presigned query, if one waits
        datasets.r.delete(query_key(datasets.prefix, dataset_id))
    with contextlib.suppress(Exception):
        artifacts.delete_prefix(Keys.dataset(dataset_id))


def _suffixes(name: str) -> list[str]:
    """Known extensions only (the stored name is ours, never the caller's)."""
    allowed = {".jsonl", ".ndjson", ".json", ".parquet", ".pq", ".csv", ".gz"}
    parts = name.lower().rsplit("/", 1)[-1].split(".")[1:]
    return [f".{p}" for p in parts[-2:] if f".{p}" in allowed]


def _over_quota(used: int, quota: int) -> ApiError:
    return ApiError(429, "storage_quota_exceeded", f"the tenant's data sets hold {used:,} "
                    f"bytes; with this upload they would pass the quota of {quota:,} "
                    "(delete a data set first)", used=used, quota=quota)


def _too_large(limit: int) -> ApiError:
    return ApiError(413, "upload_too_large",
                    f"the upload is larger than the limit of {limit:,} bytes", limit=limit)


@router.get("", response_model=DatasetsPublic, responses=error_responses(400),
            operation_id="list_datasets")
def list_datasets(tenant: CurrentTenant, datasets: Datasets,
                  status_: Annotated[DatasetStatus | None, Query(alias="status")] = None,
                  limit: Limit = 50, after: After = None,
                  offset: Offset = 0) -> DatasetsPublic:
    """The tenant's data sets, newest first, optionally of one status."""
    page = read_page(datasets, tenant, limit=limit, after=after, offset=offset,
                     where={"status": status_})
    return DatasetsPublic(data=[_public(d) for d in page.records], count=page.count,
                          next_after=page.next_after)


@router.get("/{dataset_id}", response_model=DatasetPublic, responses=error_responses(404),
            operation_id="get_dataset")
def get_dataset(dataset_id: str, tenant: CurrentTenant, datasets: Datasets) -> DatasetPublic:
    doc = datasets.get(dataset_id, tenant)
    if doc is None:
        raise not_found("dataset", dataset_id)
    return _public(doc)


@router.get("/{dataset_id}/rows", response_model=DatasetRows, operation_id="preview_rows",
            responses=error_responses(404, 409))
def preview_rows(dataset_id: str, tenant: CurrentTenant, datasets: Datasets,
                 artifacts: Artifacts, settings: SettingsDep,
                 offset: Annotated[int, Query(ge=0)] = 0,
                 limit: Annotated[int, Query(ge=1, le=200)] = 20) -> DatasetRows:
    """Normalised rows (row_id, prompt, chosen/rejected or completion/label, extra); each
    text cut to ``PREVIEW_CHARS`` characters (``truncated`` lists the cut fields)."""
    doc = datasets.get(dataset_id, tenant)
    if doc is None:
        raise not_found("dataset", dataset_id)
    if doc["status"] != "ready":
        raise ApiError(409, "dataset_not_ready", f"the data set is {doc['status']}",
                       status=doc["status"])
    data = open_dataset(doc, artifacts, settings)
    rows: list[dict[str, Any]] = []
    for i, ex in enumerate(data):
        if i < offset:
            continue
        if len(rows) == limit:
            break
        row = {k: v for k, v in {
            "row_id": ex.row_id, "row": ex.row, "line": ex.line, "prompt": ex.prompt,
            "chosen": ex.chosen, "rejected": ex.rejected, "completion": ex.completion,
            "label": ex.label, "extra": ex.extra}.items() if v is not None}
        cut = [k for k in ("prompt", "chosen", "rejected", "completion")
               if isinstance(row.get(k), str) and len(row[k]) > PREVIEW_CHARS]
        for k in cut:
            row[k] = row[k][:PREVIEW_CHARS] + "…"
        rows.append(row | ({"truncated": cut} if cut else {}))
    return DatasetRows(data=rows, offset=offset, limit=limit)


@router.delete("/{dataset_id}", status_code=status.HTTP_204_NO_CONTENT,
               operation_id="delete_dataset",
               responses=error_responses(404))
def delete_dataset(dataset_id: str, tenant: CurrentTenant, datasets: Datasets,
                   artifacts: Artifacts, idem: DatasetIdempotency, jobs: Jobs,
                   keep_results: Annotated[bool, Query(
                       description="keep the jobs that read this data set, with their "
                                   "subsets and scores")] = False) -> None:
    """Delete a data set, its file and, unless ``keep_results=true``, everything derived
    from it: every job that read it (a running one stops at its next batch) with its
    subsets, scores and cached scores. The Idempotency-Key that created it is freed: a
    repeat of that request afterwards makes a new data set (rather than answering 409
    "in progress" for the rest of the day about a record that is gone)."""
    doc = datasets.get(dataset_id, tenant)
    if doc is None:
        raise not_found("dataset", dataset_id)
    Deletion(tenant, datasets, jobs, artifacts, idem).dataset(doc, keep_results=keep_results)


class Erased(BaseModel):
    deleted_datasets: int
    deleted_jobs: int


@router.delete("", response_model=Erased, operation_id="delete_all_datasets")
def delete_all_datasets(tenant: CurrentTenant, datasets: Datasets, artifacts: Artifacts,
                        idem: DatasetIdempotency, jobs: Jobs,
                        all_: Annotated[Literal["true"], Query(
                            alias="all", description="required, true: every data set and "
                                                     "job of the tenant goes")]) -> Erased:
    """Delete everything the tenant owns: every data set, every job (those kept with
    ``keep_results`` too), their files, cached scores and Idempotency-Keys. Running jobs
    stop at their next batch. ``?all=true`` is required: a bare DELETE is refused (422),
    being more likely a mistake than a wish."""
    del all_  # its presence is the confirmation
    return Erased(**Deletion(tenant, datasets, jobs, artifacts, idem).everything())
