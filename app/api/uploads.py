"""An upload's bytes written into the artifact store as they arrive, within the upload
size limit and the tenant's storage quota (the API's streamed body and the dashboard's
form both write through it), and the upload's form fields read as the API's schema says."""

from __future__ import annotations

import contextlib
import hashlib
import json
from typing import Any, BinaryIO, Literal

from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, Field, TypeAdapter, ValidationError

from app.api.errors import ApiError
from core.artifacts import ArtifactStore, Keys
from core.contract import DatasetOptions
from isa.ingest.readers import FILE_FORMATS
from isa.ingest.shapes import SHAPES
from isa.remote.contract import Metadata

FileFormat = Literal[FILE_FORMATS]  # type: ignore[valid-type]
Shape = Literal[SHAPES]  # type: ignore[valid-type]
Pairing = Literal["best_vs_worst", "best_vs_each"]
OnInvalid = Literal["fail", "skip"]


class UploadFields(BaseModel):
    """The form fields beside the ``file`` part. Choices are typed without ``None``: a
    multipart form has no null, only absent fields."""

    format: FileFormat = None  # type: ignore[assignment]
    shape: Shape = None  # type: ignore[assignment]
    column_map: str | None = Field(None, description='JSON {"your_column": "our_field"}, '
                                   'e.g. {"question": "prompt"}')
    id_field: str | None = None
    pairing: Pairing = Field(None, description="how a row of N rated answers (shape "  # type: ignore[assignment]
                             "ranked) becomes pairs")
    on_invalid: OnInvalid = "fail"
    metadata: str | None = Field(None, description='JSON {"key": "value"}: labels to find '
                                 "the data set again (at most 16 pairs)")


def upload_request_body() -> dict[str, Any]:
    """The OpenAPI request body of ``POST /v1/datasets`` (the route reads its body itself,
    so FastAPI cannot derive it)."""
    schema = UploadFields.model_json_schema()
    for prop in schema["properties"].values():
        if prop.get("default", 0) is None:
            del prop["default"]
    schema["properties"] = {"file": {"type": "string", "title": "File",
                                     "contentMediaType": "application/octet-stream",
                                     "description": "the data file (JSON Lines, JSON, "
                                     "Parquet or CSV; gzip allowed)"},
                            **schema["properties"]}
    schema["required"] = ["file"]
    schema["title"] = "Body_upload_dataset"
    return {"required": True, "content": {"multipart/form-data": {"schema": schema}}}


def upload_options(fields: dict[str, str]) -> DatasetOptions:
    """The read options of an upload's form ``fields``: 422 ``validation_error`` for a
    value outside its schema, ``invalid_options`` for an empty choice or a bad
    ``column_map``."""
    for name, choices in (("format", FILE_FORMATS), ("shape", SHAPES),
                          ("on_invalid", ("fail", "skip")),
                          ("pairing", ("best_vs_worst", "best_vs_each"))):
        # an empty field must not quietly read as "detect it"
        if fields.get(name) == "":
            raise ApiError(422, "invalid_options", f"invalid upload options: {name} is "
                           f"empty; leave it out or give one of {', '.join(choices)}",
                           field=name)
    known = {k: v for k, v in fields.items() if k in UploadFields.model_fields}
    try:
        form = UploadFields.model_validate(known)
    except ValidationError as exc:
        raise RequestValidationError([{**e, "loc": ("body", *e["loc"])}
                                      for e in exc.errors()]) from exc
    try:
        return DatasetOptions(format=form.format, shape=form.shape, id_field=form.id_field,
                              on_invalid=form.on_invalid, pairing=form.pairing,
                              column_map=json.loads(form.column_map) if form.column_map
                              else None)
    except (ValueError, TypeError) as exc:
        raise ApiError(422, "invalid_options", f"invalid upload options: {exc}") from exc


_METADATA: TypeAdapter[dict[str, str]] = TypeAdapter(Metadata)


def upload_metadata(fields: dict[str, str]) -> dict[str, str] | None:
    """The upload's ``metadata`` form field (JSON), checked as a job's is."""
    raw = fields.get("metadata")
    if not raw:
        return None
    try:
        return _METADATA.validate_json(raw)
    except ValidationError as exc:
        raise RequestValidationError([{**e, "loc": ("body", "metadata", *e["loc"])}
                                      for e in exc.errors()]) from exc


def missing_file() -> RequestValidationError:
    return RequestValidationError([{"type": "missing", "loc": ("body", "file"),
                                    "msg": "Field required", "input": None}])


def too_large(limit: int) -> ApiError:
    return ApiError(413, "upload_too_large",
                    f"the upload is larger than the limit of {limit:,} bytes", limit=limit)


def over_quota(used: int, quota: int) -> ApiError:
    return ApiError(429, "storage_quota_exceeded", f"the tenant's data sets hold {used:,} "
                    f"bytes; with this upload they would pass the quota of {quota:,} "
                    "(delete a data set first)", used=used, quota=quota)


def stored_suffix(name: str) -> str:
    """Known extensions only (the stored name is ours, never the caller's)."""
    allowed = {".jsonl", ".ndjson", ".json", ".parquet", ".pq", ".csv", ".gz"}
    parts = name.lower().rsplit("/", 1)[-1].split(".")[1:]
    return "".join(f".{p}" for p in parts[-2:] if f".{p}" in allowed)


class UploadWriter:
    """The file of data set ``dataset_id``, written into the artifact store chunk by chunk
    (atomically: readers see it only once ``close`` succeeds). ``quota``: the tenant's
    storage quota with ``used`` bytes already held, or None when it must not refuse (an
    Idempotency-Key retry)."""

    def __init__(self, artifacts: ArtifactStore, dataset_id: str, *, limit: int, used: int,
                 quota: int | None) -> None:
        self.artifacts, self.dataset_id = artifacts, dataset_id
        self.limit, self.used, self.quota = limit, used, quota
        self.filename: str | None = None
        self.artifact: str | None = None
        self.size = 0
        self._digest = hashlib.sha256()
        self._stack = contextlib.ExitStack()
        self._out: BinaryIO | None = None

    def open(self, filename: str) -> None:
        self.filename = filename
        self.artifact = Keys.upload(self.dataset_id, stored_suffix(filename))
        self._out = self._stack.enter_context(self.artifacts.open_write(self.artifact))

    def write(self, data: bytes) -> None:
        assert self._out is not None, "open() first"
        self.size += len(data)
        if self.size > self.limit:
            raise too_large(self.limit)
        if self.quota is not None and self.used + self.size > self.quota:
            raise over_quota(self.used, self.quota)
        self._digest.update(data)
        self._out.write(data)

    @property
    def sha256(self) -> str:
        return self._digest.hexdigest()

    def close(self) -> None:
        """The file is complete: publish it."""
        self._stack.close()

    def discard(self, exc: BaseException | None = None) -> None:
        """The upload failed: nothing of it stays in the store."""
        with contextlib.suppress(Exception):
            error = exc or RuntimeError("upload discarded")
            # the atomic writer drops its temporary file when its block raises
            self._stack.__exit__(type(error), error, error.__traceback__)
        with contextlib.suppress(Exception):
            self.artifacts.delete_prefix(Keys.dataset(self.dataset_id))
