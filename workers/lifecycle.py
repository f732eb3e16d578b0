"""The life of a job inside the workers, the same for every task type: claim it, run the
body under a guard that maps every outcome onto the job record, report stage and
progress, notice a cancel request, and resolve the data sets it reads.

    @celery_app.task(name=TASK_EVALUATE)
    def evaluate_job(job_id):
        run_claimed(job_id, evaluate_job, _evaluate)   # _evaluate(job: JobRun) -> None
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from celery.exceptions import SoftTimeLimitExceeded
from pydantic import ValidationError

from core.artifacts import Keys
from core.contract import open_dataset, parse_job_request
from core.records import TERMINAL, RecordStore, now
from isa.errors import ConfigError, EngineError
from isa.ingest.dataset import PreferenceFile
from workers import fanout
from workers.context import WorkerContext, context
from workers.redact import scrub
from workers.supervisor import heartbeat
from workers.tracking import track_job


class JobCancelled(Exception):
    """Raised inside a job's body when its record left ``running`` (a cancel request)."""


@dataclass
class ProgressHold:
    """A resumed job's progress only moves forwards.

    A job sent again after its worker died starts over from its first stage (reading the
    data, finding its cached embeddings), which would show the client "reading 0/3,000"
    after "embedding 2,332/3,868". Until the new delivery gets past where the lost one
    was, its reports of the stages reached before are not shown, and at the stage it was
    lost in only a report at least as far along is; the record says which ``attempts``
    this is."""

    stage: str
    fraction: float  # how far along that stage was
    earlier: frozenset[str]  # the stages reached before it

    @classmethod
    def of(cls, ctx: WorkerContext, record: dict[str, Any]) -> ProgressHold | None:
        stage = record.get("stage")
        if record.get("status") != "running" or not stage:
            return None  # a first delivery: nothing shown yet to keep
        reached = ctx.jobs.stages(record["id"])
        earlier = frozenset(reached[:reached.index(stage)] if stage in reached else reached)
        total = int(record.get("progress_total") or 0)
        fraction = int(record.get("progress_done") or 0) / total if total else 0.0
        return cls(stage, fraction, earlier)

    def hides(self, stage: str, done: int, total: int) -> bool:
        if stage in self.earlier:
            return True
        if stage == self.stage:
            return (done / total if total else 0.0) < self.fraction
        return False  # a stage the lost delivery never reached: the hold is over


@dataclass
class JobRun:
    """A claimed job and what its body needs to report on it."""

    ctx: WorkerContext
    id: str
    tenant: str
    request: Any  # one of the core.contract job models
    record: dict[str, Any]
    hold: ProgressHold | None = None  # a resumed delivery's (see ProgressHold)

    def check_cancel(self) -> None:
        if self.cancel_requested():
            raise JobCancelled

    def stage(self, stage: str, done: int = 0, total: int = 0) -> None:
        if self.hold is not None:
            if self.hold.hides(stage, done, total):
                return
            self.hold = None
        self.ctx.jobs.set_progress(self.id, stage, done, total)

    def progress(self, stage: str, done: int, total: int) -> None:
        """A ``(stage, done, total)`` callback for the library: reports, then stops the
        work by raising ``JobCancelled`` if the job is being cancelled."""
        self.check_cancel()
        self.stage(stage, done, total)

    def dataset(self, dataset_id: str) -> dict[str, Any]:
        """The tenant's data set record, which must be ready."""
        ds = self.ctx.datasets.get(dataset_id, self.tenant)
        if ds is None:
            raise ConfigError(f"data set {dataset_id!r} does not exist (it may have been "
                              "deleted)", code="dataset_not_found", dataset_id=dataset_id)
        if ds["status"] == "invalid":
            # it failed validation after the job was accepted: say why, as a 409 at POST would
            raise ConfigError(f"data set {dataset_id!r} failed validation",
                              code="dataset_invalid", dataset_id=dataset_id,
                              error=ds.get("error"))
        if ds["status"] != "ready":
            raise ConfigError(f"data set {dataset_id!r} is still {ds['status']}",
                              code="dataset_not_ready", dataset_id=dataset_id)
        return ds

    def open(self, dataset: dict[str, Any]) -> PreferenceFile:
        """The data set's file, read with its upload options."""
        return open_dataset(dataset, self.ctx.artifacts, self.ctx.settings)

    def put_file(self, local: Path, filename: str | None = None) -> None:
        """Store a result file under the job's key (written atomically)."""
        self.ctx.artifacts.put_file(local, Keys.job_file(self.id, filename or local.name))

    def cancel_requested(self) -> bool:
        return self.ctx.jobs.status(self.id) != "running"

    def succeed(self, result: dict[str, Any], **fields: Any) -> None:
        if self._tracked():
            self.stage("tracking")
        tracked = track_job(self.ctx, self.id, self.record, result)
        if tracked is not None:
            result = {**result, "mlflow": tracked}
        moved, prev = self.ctx.jobs.transition(self.id, "succeeded", finished_at=now(),
                                               stage="done", result=result, **fields)
        if moved:
            self.ctx.metrics.incr("jobs_succeeded")
        elif prev == "cancelling":  # a cancel arrived after the last check: honour it
            self.cancelled()

    def _tracked(self) -> bool:
        return bool((self.record["request"].get("mlflow") or {}).get("tracking_uri")
                    or self.ctx.settings.mlflow_tracking_uri)

    def cancelled(self, **fields: Any) -> None:
        self.ctx.jobs.transition(self.id, "cancelled", finished_at=now(), **fields)

    def fail(self, code: str, message: str, **details: Any) -> None:
        # logged to MLflow first, as a success is, so the error names its run; only while
        # this job is still running (a map/reduce job's other tasks may fail it too) and not
        # at the time limit (the hard limit is a minute away)
        once = f"{self.ctx.settings.key_prefix}mlflow-failed:{self.id}"  # one task logs
        if code != "time_limit_exceeded" and self._tracked() and \
                self.ctx.jobs.status(self.id) == "running" and \
                self.ctx.redis.set(once, "1", nx=True, ex=24 * 3600):
            error = scrub({"code": code, "message": message, "details": details})
            tracked = track_job(self.ctx, self.id, self.record, {}, error=error)
            if tracked is not None:
                details = {**details, "mlflow": tracked}
        _fail(self.ctx, self.id, code, message, **details)


def _fail(ctx: WorkerContext, job_id: str, code: str, message: str, **details: Any) -> None:
    error = scrub({"code": code, "message": message, "details": details})
    moved, _ = ctx.jobs.transition(job_id, "failed", finished_at=now(), error=error)
    if moved:
        ctx.metrics.incr("jobs_failed")


def load(ctx: WorkerContext, job_id: str) -> JobRun | None:
    """The job's record with its request parsed, unless it has ended; a request the
    contract does not accept fails the job (it could never run)."""
    record = ctx.jobs.get(job_id)
    if record is None or record["status"] in TERMINAL:
        return None
    try:
        request = parse_job_request(record["request"], stored=True)
    except ValidationError as exc:
        _fail(ctx, job_id, "invalid_request", f"the stored request is not valid: {exc}")
        return None
    return JobRun(ctx, job_id, record["tenant"], request, record)


def claimable_from(ctx: WorkerContext, store: RecordStore, record_id: str, task: Any,
                   resume: bool, waiting: str) -> tuple[str, ...] | None:
    """The statuses this delivery may claim a record from (``None``: any the store
    allows). A fresh message claims only work still ``waiting``: a duplicate of it (one
    the supervisor sent again believing it lost) finds the work running and leaves it.
    Work already running is taken over only by a resume: the supervisor's (``resume``,
    sent once the heartbeat stopped) or the broker's redelivery of a message whose worker
    died, and that one only while the record's heartbeat is stale."""
    if resume:
        return None
    redelivered = bool((getattr(task.request, "delivery_info", None) or {}).get("redelivered"))
    if redelivered:
        beat = store.last_beat(record_id)
        if beat is None or now() - beat >= ctx.settings.stale_after_s:
            return None
    return (waiting,)


def claim(job_id: str, task: Any, resume: bool = False) -> JobRun | None:
    """Move a queued job to ``running`` for this delivery (``resume``: a stale running one,
    see ``claimable_from``). None when the job is gone, finished or cancelled, claimed by
    another delivery, or waiting for a data set that is still being validated (then the
    task is sent again shortly instead of holding a worker slot)."""
    ctx = context()
    job = load(ctx, job_id)
    if job is None or _requeued_while_validating(job, task):
        return None
    only = claimable_from(ctx, ctx.jobs, job_id, task, resume, "queued")
    if not ctx.jobs.transition(job_id, "running", only_from=only, started_at=now())[0]:
        return None
    job.hold = ProgressHold.of(ctx, job.record)
    return job


def _requeued_while_validating(job: JobRun, task: Any) -> bool:
    for dataset_id in job.request.dataset_ids():
        ds = job.ctx.datasets.get(dataset_id, job.tenant)
        if ds is not None and ds["status"] in ("uploaded", "validating"):
            task.apply_async(args=(job.id,), countdown=1,
                             queue=job.record.get("queue") or job.request.queue
                             or job.ctx.settings.default_queue)
            return True
    return False


def guard(job: JobRun, body: Callable[[JobRun], None]) -> None:
    """Run a job's body; every way it can end lands on the job record, and no exception
    reaches the worker."""
    try:
        body(job)
    except JobCancelled:
        # a cancelled job leaves nothing half-made behind (an align job that stops keeps
        # what it trained: it ends itself, without raising)
        job.ctx.artifacts.delete_prefix(Keys.job(job.id))
        job.cancelled()
    except SoftTimeLimitExceeded:
        job.fail("time_limit_exceeded", f"the job ran past the task time limit of "
                 f"{job.ctx.settings.task_time_limit_s:,} s")
    except EngineError as exc:
        job.fail(exc.code, exc.message, **exc.details)
    except ValidationError as exc:  # settings the library refused (e.g. AlignConfig)
        job.fail("invalid_parameters", str(exc))
    except Exception as exc:  # a bug or a broken dependency: fail the job, keep the worker
        job.fail("internal_error", f"{type(exc).__name__}: {exc}")


def _supervised(job: JobRun, body: Callable[[JobRun], None],
                also: Callable[[], None] | None = None) -> None:
    """``body`` under the guard, beating for the job (and ``also``) all along (see
    workers.supervisor)."""
    with heartbeat(job.ctx.jobs, job.id, job.ctx.settings.heartbeat_interval_s, also):
        guard(job, body)


def run_claimed(job_id: str, task: Any, body: Callable[[JobRun], None],
                resume: bool = False) -> None:
    """A job's first task: claim the job, then run ``body`` under the guard."""
    job = claim(job_id, task, resume)
    if job is not None:
        _supervised(job, body)


def _continuing(job_id: str) -> JobRun | None:
    """A running job for one of its later tasks; None when it ended (a job being
    cancelled is cancelled here)."""
    ctx = context()
    status = ctx.jobs.status(job_id)
    job = load(ctx, job_id) if status in ("running", "cancelling") else None
    if job is not None and status == "cancelling":
        job.cancelled()
        return None
    return job


def run_continuation(job_id: str, body: Callable[[JobRun], None]) -> None:
    """A later task of a running job (a fan-out's follow-up): runs ``body`` under the
    guard while the job is running, ends a job being cancelled."""
    job = _continuing(job_id)
    if job is not None:
        _supervised(job, body)


def run_part(job_id: str, generation: int, index: int, body: Callable[[JobRun], None]) -> None:
    """One fanned-out part of a running job (``workers.fanout``): runs ``body`` under the
    guard while the job is running and the part is of its current generation, beating for
    the part as well as the job; a finished part counts towards the barrier, the last one
    sends the follow-up."""
    ctx = context()
    job = _continuing(job_id)
    if job is None or not fanout.is_pending(ctx.jobs, job_id, generation, index):
        # the job ended, fanned out anew, or this part was done by an earlier copy
        fanout.forget(ctx.jobs, job_id, generation, index)
        return

    def then_finish(job: JobRun) -> None:
        body(job)
        fanout.finish(ctx.jobs, job_id, generation, index)

    try:
        _supervised(job, then_finish,
                    also=lambda: fanout.beat(ctx.jobs, job_id, generation, index))
    finally:
        fanout.forget(ctx.jobs, job_id, generation, index)
