"""/v1/datasets — upload (streamed to the artifact store), inspect, preview, delete."""

from __future__ import annotations

import contextlib
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from fastapi import APIRouter, Header, Query, Request, Response, status
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
from app.api.multipart import FileData, FileStart, read_parts
from app.api.pagination import (
    After,
    FilenameFilter,
    Limit,
    MetadataFilter,
    Offset,
    metadata_pair,
    read_page,
)
from app.api.schemas import DatasetPublic, DatasetRows, DatasetsPublic
from app.api.uploads import (
    UploadWriter,
    missing_file,
    over_quota,
    stored_suffix,
    too_large,
    upload_metadata,
    upload_options,
    upload_request_body,
)
from core.artifacts import ArtifactStore, Keys
from core.celery_app import TASK_VALIDATE, celery_app
from core.contract import COLUMN_MAP_VERSION, DatasetOptions, open_dataset
from core.imports import QUERY_TTL_S, check_import_url, file_name, query_key, without_query
from core.records import new_id
from core.row_index import RowIndex
from core.settings import Settings
from isa.errors import ConfigError
from isa.remote.contract import DatasetImport, DatasetStatus

router = APIRouter(prefix="/v1/datasets", tags=["datasets"],
                   responses=error_responses(401, 422, 503))
#: OpenAPI links from a created data set to its other operations
_LINKS = {name: {"operationId": op, "parameters": {"dataset_id": "$response.body#/id"}}
          for name, op in (("GetDataset", "get_dataset"), ("PreviewRows", "preview_rows"),
                           ("DeleteDataset", "delete_dataset"))}
#: characters of each text a preview shows (the rows can be far longer)
PREVIEW_CHARS = 2000


def _public(doc: dict[str, Any]) -> DatasetPublic:
    return DatasetPublic.model_validate(doc)


_REPLAY = {"description": "an Idempotency-Key replay", "model": DatasetPublic, "links": _LINKS}
#: the header, as jobs take it (``app.api.idempotency``)
IdemKey = Annotated[str | None, Header(max_length=255, description="a retry with the same "
                                       "key and body answers the data set the first made")]


@router.post("", response_model=DatasetPublic, status_code=status.HTTP_201_CREATED,
             operation_id="upload_dataset",
             openapi_extra={"requestBody": upload_request_body()},
             responses={200: _REPLAY, 201: {"description": "the data set, to be validated",
                                            "links": _LINKS},
                        **error_responses(400, 409, 413, 429)})
async def upload_dataset(request: Request, response: Response, tenant: CurrentTenant,
                         datasets: Datasets, artifacts: Artifacts, settings: SettingsDep,
                         idem: DatasetIdempotency, idempotency_key: IdemKey = None
                         ) -> DatasetPublic:
    """Upload a preference data file (multipart: ``file`` and the read options); it is
    validated by a worker (poll ``status``). The file streams straight into the artifact
    store as it arrives. With an ``Idempotency-Key``, a repeat of the same file and
    options answers the data set the first request made (200, in whatever state it is;
    24 h), the same key with another file or options 422."""
    writer = begin_upload(request, tenant, datasets, artifacts, settings, idem,
                          idempotency_key)
    fields: dict[str, str] = {}
    try:
        async for part in read_parts(request):
            if isinstance(part, FileData):
                writer.write(part.data)
            elif isinstance(part, FileStart):
                writer.open(part.filename)
            else:  # the last of a repeated field counts, as in Starlette's form
                fields[part.name] = part.value
        if writer.artifact is None:
            raise missing_file()
        writer.close()
        options, metadata = upload_options(fields), upload_metadata(fields)
    except BaseException as exc:
        writer.discard(exc)
        raise
    return finish_upload(response, writer, options, tenant, datasets, artifacts, settings,
                         idem, idempotency_key, metadata)


def begin_upload(request: Request, tenant: str, datasets: Datasets, artifacts: Artifacts,
                 settings: SettingsDep, idem: DatasetIdempotency,
                 idempotency_key: str | None) -> UploadWriter:
    """The checks before a byte is read (a declared size over the limit or the quota),
    and the writer of the new data set's file."""
    length = request.headers.get("content-length")
    declared = int(length) if length and length.isdigit() else 0
    if declared > settings.max_upload_bytes + 64 * 1024:
        raise too_large(settings.max_upload_bytes)
    # a retry of an upload whose first try is claimed: that one already counts against
    # the quota, so the quota must not refuse the retry (checked again if it creates)
    retry = idempotency_key is not None and idem.peek(tenant, idempotency_key) is not None
    used = datasets.stored_bytes(tenant)
    quota = None if retry else settings.max_stored_bytes_per_tenant
    if quota is not None and used + declared > quota + 64 * 1024:
        raise over_quota(used, quota)
    return UploadWriter(artifacts, new_id("ds"), limit=settings.max_upload_bytes, used=used,
                        quota=quota)


def finish_upload(response: Response, writer: UploadWriter, options: DatasetOptions,
                  tenant: str, datasets: Datasets, artifacts: Artifacts,
                  settings: SettingsDep, idem: DatasetIdempotency,
                  idempotency_key: str | None,
                  metadata: dict[str, str] | None = None) -> DatasetPublic:
    """Record the stored file as a data set and send its validation (or, for a replayed
    Idempotency-Key, drop this copy and answer the first request's data set)."""
    dataset_id = writer.dataset_id
    # stored without its unset (None) options: a worker of the version before, whose
    # strict model lacks a newer option (pairing), still reads what a new gateway wrote
    fields = {"filename": (writer.filename or "upload")[:255], "size_bytes": writer.size,
              "sha256": writer.sha256, "artifact": writer.artifact,
              "options": options.model_dump(exclude_none=True),
              "metadata": metadata or None, "column_map_v": COLUMN_MAP_VERSION}
    if idempotency_key is not None:
        # the body's fingerprint: the file's bytes (their sha256), its name and the options
        # (all of them, None too: a retry across a deploy keeps the first's fingerprint)
        fingerprint = idem.fingerprint({"upload": {
            "filename": fields["filename"], "sha256": fields["sha256"],
            "options": options.model_dump(),
            **({"metadata": metadata} if metadata else {})}})
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
            if writer.quota is None and used + writer.size > settings.max_stored_bytes_per_tenant:
                # the first try's claim was gone (expired, or that try failed): a new upload
                raise over_quota(used, settings.max_stored_bytes_per_tenant)
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
            raise over_quota(used, settings.max_stored_bytes_per_tenant)
        name = file_name(body.url)
        suffix = stored_suffix(name)
        try:
            if query := urlsplit(body.url).query:  # a presigned URL: kept out of the record
                datasets.r.set(query_key(datasets.prefix, dataset_id), query, ex=QUERY_TTL_S)
            datasets.create(tenant, dataset_id, "uploaded", {
                "filename": name[:255], "size_bytes": 0, "sha256": "",
                "artifact": Keys.upload(dataset_id, suffix),
                "source_url": without_query(body.url),
                "hub": body.hub.model_dump() if body.hub else None,
                "options": DatasetOptions.model_validate(  # no None: as for an upload
                    body.model_dump(exclude={"url", "hub", "metadata"})
                ).model_dump(exclude_none=True),
                "metadata": body.metadata or None,
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


@router.get("", response_model=DatasetsPublic, responses=error_responses(400),
            operation_id="list_datasets")
def list_datasets(tenant: CurrentTenant, datasets: Datasets,
                  status_: Annotated[DatasetStatus | None, Query(alias="status")] = None,
                  filename: FilenameFilter = None, metadata: MetadataFilter = None,
                  limit: Limit = 50, after: After = None,
                  offset: Offset = 0) -> DatasetsPublic:
    """The tenant's data sets, newest first, optionally of one status and/or whose file
    name contains ``filename`` (any case), or those carrying one metadata pair
    (``metadata=key:value``, alone)."""
    page = read_page(datasets, tenant, limit=limit, after=after, offset=offset,
                     where={"status": status_, "filename": filename,
                            "metadata": metadata_pair(metadata)})
    return DatasetsPublic(data=[_public(d) for d in page.records], count=page.count,
                          next_after=page.next_after, has_more=page.next_after is not None)


@router.get("/{dataset_id}", response_model=DatasetPublic, responses=error_responses(404),
            operation_id="get_dataset")
def get_dataset(dataset_id: str, tenant: CurrentTenant, datasets: Datasets) -> DatasetPublic:
    doc = datasets.get(dataset_id, tenant)
    if doc is None:
        raise not_found("dataset", dataset_id)
    return _public(doc)


PREVIEW_FIELDS = ("row_id", "row", "line", "prompt", "chosen", "rejected", "completion",
                  "label", "extra")


def _rows(doc: dict[str, Any], artifacts: ArtifactStore, settings: Settings, offset: int,
          limit: int) -> list[dict[str, Any]]:
    """Rows ``offset`` to ``offset + limit``: from the row index validation wrote (a row
    group or two, at any offset), else (a data set validated before indexes) by reading
    the file from its start."""
    index = RowIndex.open(artifacts, doc["id"])
    if index is not None:
        return index.page(offset, limit)
    out = []
    for i, ex in enumerate(open_dataset(doc, artifacts, settings)):
        if i >= offset + limit:
            break
        if i >= offset:
            out.append({k: getattr(ex, k) for k in PREVIEW_FIELDS})
    return out


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
    rows: list[dict[str, Any]] = []
    for found in _rows(doc, artifacts, settings, offset, limit):
        row = {k: v for k in PREVIEW_FIELDS if (v := found.get(k)) is not None}
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
