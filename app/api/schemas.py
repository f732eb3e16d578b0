"""Response models, one family per resource. What a client may *ask* for — the job
request union and the upload options — is the shared contract in ``core.contract``."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

from core.contract import DatasetOptions

# --- errors ------------------------------------------------------------------------------


class ErrorInfo(BaseModel):
    code: str
    message: str
    details: dict[str, Any] = Field(default_factory=dict)


class ErrorResponse(BaseModel):
    error: ErrorInfo


# --- data sets ---------------------------------------------------------------------------


class DatasetPublic(BaseModel):
    id: str
    status: Literal["uploaded", "validating", "ready", "invalid"]
    filename: str
    size_bytes: int
    sha256: str
    options: DatasetOptions
    format: str | None = None
    shape: str | None = None
    rows_read: int | None = None
    rows_valid: int | None = None
    rows_skipped: int | None = None
    report: dict[str, Any] | None = None
    error: ErrorInfo | None = None
    created_at: float
    updated_at: float


class DatasetsPublic(BaseModel):
    data: list[DatasetPublic]
    count: int


class DatasetRows(BaseModel):
    data: list[dict[str, Any]]
    offset: int
    limit: int


# --- jobs --------------------------------------------------------------------------------


class Progress(BaseModel):
    done: int = 0
    total: int = 0
    loss: float | None = None  # align jobs: the latest training loss


class JobPublic(BaseModel):
    id: str
    type: str
    status: Literal["queued", "running", "succeeded", "failed", "cancelling", "cancelled"]
    stage: str | None = None
    progress: Progress
    request: dict[str, Any]
    created_at: float
    started_at: float | None = None
    finished_at: float | None = None
    error: ErrorInfo | None = None
    result: dict[str, Any] | None = None
    queue: str | None = None
    #: times the supervisor sent the job again after its worker was lost
    attempts: int = 0


class JobsPublic(BaseModel):
    data: list[JobPublic]
    count: int
