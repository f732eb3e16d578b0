"""Request and response models, one family per resource."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

# --- errors ------------------------------------------------------------------------------


class ErrorInfo(BaseModel):
    code: str
    message: str
    details: dict[str, Any] = Field(default_factory=dict)


class ErrorResponse(BaseModel):
    error: ErrorInfo


# --- data sets ---------------------------------------------------------------------------


class DatasetOptions(BaseModel):
    format: str | None = None
    shape: str | None = None
    column_map: dict[str, str] | None = None
    id_field: str | None = None
    on_invalid: Literal["fail", "skip"] = "fail"


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


class BudgetSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    fraction: float | None = Field(default=None, gt=0, le=1)
    count: int | None = Field(default=None, ge=1)

    @model_validator(mode="after")
    def _one_of(self) -> BudgetSpec:
        if (self.fraction is None) == (self.count is None):
            raise ValueError("give exactly one of fraction or count")
        return self


class EncoderSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: Literal["sentence", "causal-lm"] = "sentence"
    model: str | None = None
    precision: Literal["auto", "float32", "bfloat16", "float16"] | None = None
    max_seq_length: int | None = Field(default=None, ge=8, le=8192)
    batch_size: int | None = Field(default=None, ge=1, le=1024)


class MethodSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    method: str
    params: dict[str, Any] = Field(default_factory=dict)


class AlignSpec(BaseModel):
    """Hyperparameters of an align job; defaults suit a small model on CPU."""

    model_config = ConfigDict(extra="forbid")
    method: Literal["dpo", "kto"] = "dpo"
    base_model: str = "smollm2-135m"
    beta: float = Field(default=0.1, gt=0, le=10)
    learning_rate: float = Field(default=1e-4, gt=0, le=1)
    epochs: float = Field(default=1.0, gt=0, le=100)
    max_steps: int | None = Field(default=None, ge=1, le=1_000_000)
    batch_size: int = Field(default=4, ge=1, le=512)
    grad_accum: int = Field(default=1, ge=1, le=512)
    max_length: int = Field(default=512, ge=16, le=32768)
    seed: int = 0
    lora: bool = True
    lora_r: int = Field(default=16, ge=1, le=1024)
    lora_alpha: int = Field(default=32, ge=1, le=4096)
    target_modules: list[str] = Field(
        default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj"], max_length=32)
    eval_pairs: int = Field(default=200, ge=1, le=100_000)


class JobCreate(BaseModel):
    """``select``: a subset. ``evaluate``: the proxy probe on a method's subset vs. the
    full pool. ``curve``: probe accuracy over a grid of budgets for several methods."""

    model_config = ConfigDict(extra="forbid")
    type: Literal["select", "evaluate", "curve", "align"]
    dataset_id: str | None = None
    #: align: train on a finished select job's subset instead of a whole data set
    select_job_id: str | None = None
    align: AlignSpec = Field(default_factory=AlignSpec)
    method: str = "isa"
    params: dict[str, Any] = Field(default_factory=dict)
    budget: BudgetSpec | None = None
    encoder: EncoderSpec = Field(default_factory=EncoderSpec)
    # evaluate / curve
    eval_dataset_id: str | None = None
    eval_fraction: float = Field(default=0.2, gt=0, lt=1)
    methods: list[MethodSpec] = Field(default_factory=lambda: [
        MethodSpec(method="isa"), MethodSpec(method="random")], max_length=20)
    budgets_percent: list[float] = Field(
        default_factory=lambda: [1, 2, 3.5, 5, 10, 25, 50, 100], min_length=3, max_length=30)
    seeds: int | None = Field(default=None, ge=1, le=20)
    share: float = Field(default=0.95, gt=0, lt=1)
    level: Literal["auto", "pair", "item"] = "auto"
    template: Literal["prompt_completion", "completion", "prompt", "pair"] = \
        "prompt_completion"
    seed: int = 0
    queue: Literal["cpu", "gpu"] | None = None

    @model_validator(mode="after")
    def _budget_where_needed(self) -> JobCreate:
        if self.select_job_id is not None and self.type != "align":
            raise ValueError("select_job_id is for align jobs")
        if (self.dataset_id is None) == (self.select_job_id is None):
            raise ValueError("give exactly one of dataset_id and select_job_id")
        if self.type in ("select", "evaluate") and self.budget is None:
            raise ValueError(f"a {self.type} job needs a budget")
        if any(not 0 < b <= 100 for b in self.budgets_percent):
            raise ValueError("budgets_percent must lie in (0, 100]")
        return self


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


class JobsPublic(BaseModel):
    data: list[JobPublic]
    count: int
