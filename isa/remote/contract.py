"""The service's wire contract: what a client may ask for (the job request union, upload
options) and what the service answers (data set and job records, errors).

The gateway validates requests with these models and publishes them as OpenAPI, the
workers parse stored requests with them, and ``isa.remote.Client`` types its calls and
results with them — one definition for all three. Only pydantic and the library's own
light classes are imported here (``isa.Budget``, ``isa.align.AlignConfig``): a client
needs neither the service nor the models.

One model per job type under a discriminated union on ``type``.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    TypeAdapter,
    field_validator,
    model_validator,
)

from isa.align.config import AlignConfig
from isa.embed.factory import ENCODERS, PACKAGED_MODELS
from isa.errors import ConfigError
from isa.select.budget import Budget

if TYPE_CHECKING:
    from isa.ingest.dataset import PreferenceFile

Level = Literal["auto", "pair", "item"]
Template = Literal["prompt_completion", "completion", "prompt", "pair"]
Queue = Literal["cpu", "gpu"]
JobType = Literal["select", "evaluate", "curve", "align"]
JobStatus = Literal["queued", "running", "succeeded", "failed", "cancelling", "cancelled"]
DatasetStatus = Literal["uploaded", "validating", "ready", "invalid"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class DatasetOptions(_Strict):
    """How an uploaded file is read (the ``PreferenceFile`` options)."""

    format: str | None = None
    shape: str | None = None
    column_map: dict[str, str] | None = None
    id_field: str | None = None
    on_invalid: Literal["fail", "skip"] = "fail"
    #: how a row of N rated answers (shape ``ranked``) becomes pairs; None: best_vs_worst
    pairing: Literal["best_vs_worst", "best_vs_each"] | None = None

    def open(self, path: Path, **limits: Any) -> PreferenceFile:
        """The library's view of the uploaded file read with these options (and the
        service's ``limits``: max_rows, max_field_chars, max_decompression_ratio)."""
        from isa.ingest.dataset import PreferenceFile

        return PreferenceFile(path, file_format=self.format, shape=self.shape,  # type: ignore[arg-type]
                              column_map=self.column_map, id_field=self.id_field,
                              pairing=self.pairing or "best_vs_worst",
                              on_invalid=self.on_invalid, **limits)


class EncoderSpec(_Strict):
    """Which encoder embeds the texts (see ``isa.embed.make_encoder``)."""

    name: Literal[ENCODERS] = "sentence"  # type: ignore[valid-type]
    #: a model *name*: a packaged one or one of the server's ``encoder_models``; never a
    #: path (a client must not learn which server paths exist)
    model: str | None = Field(default=None, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
    precision: Literal["auto", "float32", "bfloat16", "float16"] | None = None
    max_seq_length: int | None = Field(default=None, ge=8, le=8192)
    batch_size: int | None = Field(default=None, ge=1, le=1024)
    #: the sentence encoder's runtime: torch, or OpenVINO on a CPU worker (faster there)
    backend: Literal["torch", "openvino"] | None = None

    def options(self, models: dict[str, str] | None = None) -> dict[str, Any]:
        """Keyword arguments of ``make_encoder``, the model name resolved through the
        server's ``models`` (name -> local folder)."""
        out = self.model_dump(exclude_none=True)
        if self.model is not None and models and self.model in models:
            out["model"] = models[self.model]
        return out

    def check_model(self, models: dict[str, str]) -> None:
        """Raise ``ConfigError`` unless the model is packaged or one of ``models``, and
        the settings apply to this encoder (checked at POST, not in the worker)."""
        if self.backend not in (None, "torch") and self.name != "sentence":
            raise ConfigError(f"backend {self.backend!r} is for the sentence encoder",
                              code="invalid_encoder")
        if self.name == "static" and self.precision not in (None, "auto", "float32"):
            raise ConfigError("the static encoder computes in float32 (precision 'auto' or "
                              f"'float32', not {self.precision!r})", code="invalid_encoder")
        known = [*PACKAGED_MODELS[self.name], *models]
        if self.model is not None and self.model not in known:
            raise ConfigError(f"unknown {self.name} encoder model {self.model!r}; available: "
                              f"{', '.join(known)}", code="unknown_model")


class MethodSpec(_Strict):
    """A selection method by its registered name, with its parameters."""

    method: str = "isa"
    params: dict[str, Any] = Field(default_factory=dict)

    def check(self) -> None:
        """Raise ``ConfigError`` (``unknown_method``, ``invalid_parameters``) unless the
        registry knows the method and its parameters."""
        from isa.select import make_method

        make_method(self.method, **self.params)


class MlflowSpec(_Strict):
    """Where a job logs its MLflow run (beyond or instead of the server's own setting)."""

    #: an http(s) MLflow server; default: the service's ``ISA_MLFLOW_TRACKING_URI``
    tracking_uri: str | None = Field(default=None, max_length=2048,
                                     pattern=r"^[hH][tT][tT][pP][sS]?://[^\s]+$")
    experiment: str | None = Field(default=None, min_length=1, max_length=200)
    run_name: str | None = Field(default=None, min_length=1, max_length=200)


#: a metadata key: letters, digits and ``_ . -`` (no ``:``, which splits a list filter)
MetadataKey = Annotated[str, Field(min_length=1, max_length=64,
                                   pattern=r"^[A-Za-z0-9_.-]+$")]
#: a small string map a client attaches to a job or a data set to find it again (as
#: OpenAI's and Stripe's ``metadata``): at most 16 pairs, values up to 512 characters;
#: ``GET /v1/jobs?metadata=key:value`` lists the records with that pair
Metadata = Annotated[dict[MetadataKey, Annotated[str, Field(max_length=512)]],
                     Field(max_length=16)]


class _JobBase(_Strict):
    queue: Queue | None = None
    metadata: Metadata | None = None
    #: log the finished job as an MLflow run (see ``MlflowSpec``)
    mlflow: MlflowSpec | None = None
    #: POSTed the job's record, signed (Standard Webhooks), when the job ends; overrides
    #: the tenant's registered URL. Public addresses only, unless the server allows more.
    callback_url: str | None = Field(default=None, max_length=2048,
                                     pattern=r"^[hH][tT][tT][pP][sS]?://[^\s]+$")

    @model_validator(mode="before")
    @classmethod
    def _ignore_nulls_of_other_types(cls, data: Any) -> Any:
        # Clients built against the earlier flat request send every field, null where
        # unused: a null field of another job type is ignored, a value is refused.
        if isinstance(data, dict):
            return {k: v for k, v in data.items() if v is not None or k in cls.model_fields}
        return data

    def dataset_ids(self) -> list[str]:
        """The data sets the job reads (each must belong to the caller and be ready)."""
        return [d for d in (getattr(self, "dataset_id", None),
                            getattr(self, "eval_dataset_id", None)) if d is not None]

    def method_specs(self) -> list[MethodSpec]:
        """The methods the job runs (checked against the registry at submission)."""
        if isinstance(self, MethodSpec):
            return [MethodSpec(method=self.method, params=self.params)]
        return []


class _OnDataset(_JobBase):
    dataset_id: str
    encoder: EncoderSpec = Field(default_factory=EncoderSpec)
    seed: int = 0


class SelectJob(_OnDataset, MethodSpec):
    """A subset of a data set, chosen by ``method`` within ``budget``."""

    type: Literal["select"]
    budget: Budget
    level: Level = "auto"
    template: Template = "prompt_completion"


class _Evaluation(_OnDataset):
    #: held-out pairs: a data set of their own, or (None) a split of the pool by prompt
    eval_dataset_id: str | None = None
    eval_fraction: float = Field(default=0.2, gt=0, lt=1)


class EvaluateJob(_Evaluation, MethodSpec):
    """The proxy probe trained on a method's subset vs. on the whole pool."""

    type: Literal["evaluate"]
    budget: Budget
    seeds: int | None = Field(default=None, ge=1, le=20)


class CurveJob(_Evaluation):
    """Probe accuracy over a grid of budgets for several methods, with the plateau fit."""

    type: Literal["curve"]
    methods: list[MethodSpec] = Field(
        default_factory=lambda: [MethodSpec(method="isa"), MethodSpec(method="random")],
        min_length=1, max_length=20)
    budgets_percent: list[Annotated[float, Field(gt=0, le=100)]] = Field(
        default_factory=lambda: [1, 2, 3.5, 5, 10, 25, 50, 100], min_length=3, max_length=30)
    seeds: int | None = Field(default=None, ge=1, le=20)
    share: float = Field(default=0.95, gt=0, lt=1)
    #: what the plateau is fitted on; auto: length-balanced accuracy when the evaluation
    #: pairs are length-dominated (one side above 75%), else accuracy
    metric: Literal["auto", "accuracy", "balanced_accuracy"] = "auto"

    def method_specs(self) -> list[MethodSpec]:
        return self.methods


class AlignJob(_JobBase):
    """DPO or KTO with TRL on a data set, or on a finished select job's subset."""

    type: Literal["align"]
    dataset_id: str | None = None
    select_job_id: str | None = None
    eval_dataset_id: str | None = None
    align: AlignConfig = Field(default_factory=AlignConfig)

    @model_validator(mode="after")
    def _one_source(self) -> AlignJob:
        if (self.dataset_id is None) == (self.select_job_id is None):
            raise ValueError("give exactly one of dataset_id and select_job_id")
        return self


JOB_TYPES = ("select", "evaluate", "curve", "align")
JobRequest = Annotated[SelectJob | EvaluateJob | CurveJob | AlignJob,
                       Field(discriminator="type")]
_REQUEST: TypeAdapter[SelectJob | EvaluateJob | CurveJob | AlignJob] = TypeAdapter(JobRequest)
_MODELS = {"select": SelectJob, "evaluate": EvaluateJob, "curve": CurveJob, "align": AlignJob}


def parse_job_request(data: dict[str, Any], *, stored: bool = False
                      ) -> SelectJob | EvaluateJob | CurveJob | AlignJob:
    """A request as its typed model. ``stored``: a request the service accepted earlier,
    read back by a worker; fields the contract has since dropped are ignored, so a job
    queued before an upgrade still runs."""
    if stored and data.get("type") in _MODELS:
        fields = _MODELS[data["type"]].model_fields
        data = {k: v for k, v in data.items() if k in fields}
    return _REQUEST.validate_python(data)


def check_methods(request: SelectJob | EvaluateJob | CurveJob | AlignJob) -> None:
    """Every method a request names exists and takes the parameters given."""
    for spec in request.method_specs():
        spec.check()


# --- errors ------------------------------------------------------------------------------


class ErrorInfo(BaseModel):
    code: str
    message: str
    details: dict[str, Any] = Field(default_factory=dict)


class ErrorResponse(BaseModel):
    error: ErrorInfo


# --- data sets ---------------------------------------------------------------------------


class HubSelection(_Strict):
    """Which part of a Hugging Face Hub data set an ``hf://datasets/org/name`` import
    reads: the config (a folder of its files; None: every file of the split), the split
    and the revision (a branch, tag or commit)."""

    config: str | None = Field(default=None, pattern=r"^[\w.-]{1,100}$")
    split: str = Field(default="train", pattern=r"^[\w.-]{1,100}$")
    revision: str | None = Field(default=None, pattern=r"^[\w./-]{1,100}$")

    @field_validator("revision")
    @classmethod
    def _no_parent(cls, value: str | None) -> str | None:
        if value is not None and ".." in value:
            raise ValueError("a revision has no '..'")
        return value


class Histogram(BaseModel):
    """Counts of values between consecutive ``edges`` (``len(edges) == len(counts) + 1``)."""

    edges: list[float]
    counts: list[int]
    count: int
    mean: float
    min: float
    max: float


class DatasetStats(BaseModel):
    """What validation saw in a ready data set: its columns (the canonical texts, then
    the extra columns in order of appearance) and histograms of each text's length in
    characters (``prompt_chars``, …; power-of-two bins) and of each numeric extra column
    (margins, ratings; 20 equal bins over the first 200,000 values)."""

    columns: list[str]
    lengths: dict[str, Histogram]
    numeric: dict[str, Histogram]


class DatasetPublic(BaseModel):
    id: str
    status: DatasetStatus
    filename: str
    size_bytes: int
    sha256: str
    options: DatasetOptions
    format: str | None = None
    shape: str | None = None
    rows_read: int | None = None
    rows_valid: int | None = None
    #: the preference pairs (or KTO items) the valid rows hold: more than rows_valid when
    #: rows of ranked answers become several pairs (pairing best_vs_each)
    examples: int | None = None
    rows_skipped: int | None = None
    report: dict[str, Any] | None = None
    #: columns and histograms, for a ready data set validated by this version
    stats: DatasetStats | None = None
    error: ErrorInfo | None = None
    #: where an imported data set was read from
    source_url: str | None = None
    #: what an ``hf://`` import read (config, split, revision)
    hub: HubSelection | None = None
    #: the client's own labels (``Metadata``)
    metadata: dict[str, str] = Field(default_factory=dict)
    created_at: float
    updated_at: float


class DatasetImport(DatasetOptions):
    """A data set read from a URL the server allows (``import_allowed_urls``)."""

    metadata: Metadata | None = None

    url: str = Field(min_length=1, max_length=2048, pattern=r"^[a-zA-Z][a-zA-Z0-9+.-]*://\S+$")
    #: for an ``hf://datasets/org/name`` URL: the config, split and revision to read
    hub: HubSelection | None = None


class DatasetsPublic(BaseModel):
    data: list[DatasetPublic]
    #: how many data sets match the filter in all
    count: int
    #: pass as ``after`` for the next page; None on the last page
    next_after: str | None = None
    #: another page follows (``next_after`` is set)
    has_more: bool = False


class DatasetRows(BaseModel):
    data: list[dict[str, Any]]
    offset: int
    limit: int


# --- jobs --------------------------------------------------------------------------------


class Progress(BaseModel):
    done: int = 0
    total: int = 0
    loss: float | None = None  # align jobs: the latest training loss


class WaitingForWorker(BaseModel):
    """No live worker serves the job's queue."""

    queue: str
    #: since when: the queue's last worker's last sign of life (or the job's creation)
    since: float


class JobPublic(BaseModel):
    id: str
    type: str
    status: JobStatus
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
    #: the client's own labels (``Metadata``; also in ``request``)
    metadata: dict[str, str] = Field(default_factory=dict)
    #: set while no live worker serves the job's queue (none started, or all died): the
    #: job waits and its stage does not move; None once a worker serves the queue
    waiting_for_worker: WaitingForWorker | None = None
    #: the webhook of the job's end: url, state (pending, retrying, delivered, failed,
    #: refused) and every attempt (at, status_code or error, ms)
    webhook: dict[str, Any] | None = None


class JobEvent(BaseModel):
    """One thing that happened to a job (``GET /v1/jobs/{id}/events``)."""

    #: the event's place in the job's log: pass as ``after`` to read what followed it
    id: str
    created_at: float
    #: ``status`` (a status change), ``stage`` (a new stage), ``progress`` (a tenth of a
    #: stage done), ``resent`` (work sent again after its worker was lost)
    type: Literal["status", "stage", "progress", "resent"]
    level: Literal["info", "warning", "error"] = "info"
    message: str
    #: the event's figures: status and previous (and an error's code), stage, done, total,
    #: part or attempt
    data: dict[str, Any] = Field(default_factory=dict)


class JobEvents(BaseModel):
    #: oldest first
    data: list[JobEvent]
    #: more events follow the last one (read again with ``after`` = its id)
    has_more: bool
    #: the last event's id (``after`` for the next read; also while the job runs on)
    next_after: str | None = None


#: the ends of a job: what a job's ``callback_url`` receives, and what the tenant's URL
#: receives unless it subscribes to other events
JOB_END_EVENTS = ("job.succeeded", "job.failed", "job.cancelled")
#: every event a webhook delivery can carry (its ``type``); ``data`` is the record's
#: public document when the event happened: the job (``GET /v1/jobs/{id}``) for
#: ``job.*``, the data set (``GET /v1/datasets/{id}``, its ``error`` set when invalid)
#: for ``dataset.*``
WEBHOOK_EVENTS = ("job.started", *JOB_END_EVENTS, "dataset.ready", "dataset.invalid")


#: the schema names the known types, but any string passes validation: the gateway checks
#: them itself, so that an unknown one is refused with a code of its own (not a
#: validation_error) that names it
_EventType = Annotated[str, Field(json_schema_extra={"enum": list(WEBHOOK_EVENTS)})]


class WebhookPublic(BaseModel):
    """A tenant's registered webhook URL, the events it receives and the secret its
    deliveries are signed with."""

    url: str | None = None
    #: the event types the tenant's URL receives (``WEBHOOK_EVENTS``); the job end
    #: events until the tenant chooses (a server before subscriptions sent only those)
    events: list[str] = Field(default_factory=lambda: list(JOB_END_EVENTS),
                              description="the event types the URL receives")
    secret: str
    #: after a rotation with an overlap: the old secret signs deliveries too until then
    #: (each delivery carries both signatures), so a receiver can switch without a gap
    previous_secret_valid_until: float | None = None


class WebhookUpdate(_Strict):
    """The tenant's whole registration (a PUT replaces it): the URL (``null`` removes it)
    and the event types it receives."""

    url: str | None = Field(default=None, max_length=2048,
                            pattern=r"^[hH][tT][tT][pP][sS]?://[^\s]+$")
    #: the event types the URL receives, among ``WEBHOOK_EVENTS`` (another is refused:
    #: 422 ``unknown_event_type``); omitted or ``null``: the job end events, what every
    #: tenant received before subscriptions; ``[]``: none. A job's own ``callback_url``
    #: gets that job's end whatever this says.
    events: list[_EventType] | None = Field(
        default=None, max_length=32,
        description="the event types the URL receives: job.started, job.succeeded, "
        "job.failed, job.cancelled, dataset.ready, dataset.invalid (another: 422 "
        "unknown_event_type); omitted or null: the job end events only; []: none")


class JobsPublic(BaseModel):
    data: list[JobPublic]
    #: how many jobs match the filter in all
    count: int
    #: pass as ``after`` for the next page; None on the last page
    next_after: str | None = None
    #: another page follows (``next_after`` is set)
    has_more: bool = False
