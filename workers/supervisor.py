"""Supervision: work never waits for a broker timeout.

Every running job and every validation beats (a timestamp in the records' live index,
``RecordStore.beat``) from a thread beside its task, whatever the task is doing. A
supervisor thread in each worker's main process looks every ``supervise_every_s``
(one worker acts per round, under a Redis lock) for work whose heartbeat stopped
``stale_after_s`` ago — its worker was killed, or lost Redis — and sends its first task
again (which resumes from the caches), or, after ``max_attempts`` deliveries, fails it
with ``worker_lost``. A job left ``cancelling`` by a dead worker is cancelled. A job's
fanned-out parts (embedding chunks, scoring shards) beat on their own as well: a part
whose worker died is sent again alone, while its siblings run (``workers.fanout``).

Work still waiting in a queue (``queued`` jobs, ``uploaded`` data sets) shows no
heartbeat by design and is left alone while its message waits: a busy worker will reach
it. Once it has waited ``requeue_lost_after_s`` and no message for it is left in the
broker (in no queue, taken by no worker: a purge, a failover that lost the last writes),
it is sent again (seen missing in two rounds in a row), at most once a period. A
duplicate is harmless: a fresh message claims only waiting work, so a second copy finds
it running and leaves it (``workers.lifecycle.claimable_from``); the supervisor's resend
of running work says it resumes.

Every ``embedding_sweep_every_h`` one worker also sweeps the embedding shards that no
index entry names any more (``sweep_shards``).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import kombu.exceptions
from celery.signals import worker_ready

from core.celery_app import TASK_FOR_JOB_TYPE, TASK_VALIDATE, broker_is_redis, celery_app
from core.records import RECORD_ID, RecordStore, now
from workers import fanout
from workers.context import WorkerContext, context
from workers.embedding_store import sweep_shards

log = logging.getLogger("isa.supervisor")


@contextmanager
def heartbeat(store: RecordStore, record_id: str, interval_s: float,
              also: Callable[[], None] | None = None) -> Iterator[None]:
    """Beat for ``record_id`` (and call ``also``: a fanned-out part's own beat) every
    ``interval_s`` while the block runs."""
    stop = threading.Event()

    def once() -> None:
        store.beat(record_id)
        if also is not None:
            also()

    def beat() -> None:
        while not stop.wait(interval_s):
            try:
                once()
            except Exception:  # noqa: BLE001 - Redis away: the next beat tries again
                log.warning("heartbeat of %s failed", record_id, exc_info=True)

    once()
    thread = threading.Thread(target=beat, name=f"heartbeat-{record_id}", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=5)


def supervise_once(ctx: WorkerContext) -> dict[str, list[str]]:
    """One round: what was sent again, failed or cancelled (by record id)."""
    s = ctx.settings
    acted: dict[str, list[str]] = {"resent": [], "failed": [], "cancelled": [],
                                   "revalidated": [], "invalid": [], "requeued": [],
                                   "parts_resent": []}
    for job_id in ctx.jobs.stale(s.stale_after_s):
        job = ctx.jobs.get(job_id)
        if job is None:
            ctx.redis.zrem(ctx.jobs.live_key(), job_id)
        elif job["status"] == "cancelling":
            if ctx.jobs.transition(job_id, "cancelled", finished_at=now())[0]:
                acted["cancelled"].append(job_id)
        elif job["status"] == "running":
            if _waits_for_parts(ctx, job):
                ctx.jobs.beat(job_id)  # its parts wait behind other work: not lost
            else:
                _retry(ctx, ctx.jobs, job, acted)
    _resend_lost_parts(ctx, acted)
    try:
        if broker_is_redis():  # RabbitMQ keeps every message until it is acknowledged
            _resend_lost(ctx, acted)
    except Exception:  # noqa: BLE001 - the rest of the round still runs
        log.warning("looking for lost messages failed", exc_info=True)
    for dataset_id in ctx.datasets.stale(s.stale_after_s):
        ds = ctx.datasets.get(dataset_id)
        if ds is None:
            ctx.redis.zrem(ctx.datasets.live_key(), dataset_id)
        elif ds["status"] == "validating":
            _retry(ctx, ctx.datasets, ds, acted)
    return acted


#: kombu's Redis transport: a queue's priority lists and the messages workers hold
_PRIORITY_SEP, _PRIORITIES = "\x06\x16", (3, 6, 9)
_UNACKED, _UNACKED_INDEX = "unacked", "unacked_index"


def waiting_in_broker(ctx: WorkerContext, queues: set[str], *,
                      held_within_s: float | None = None) -> set[str]:
    """Ids of the records some broker message names: waiting in one of ``queues`` (each
    priority list) or taken by a worker and not yet acknowledged (also where a message
    sent with a countdown waits). Read in one transaction, so a message moving between
    the two (a worker taking it, a task sending itself again) is seen in one of them. The
    ids are read from the messages' ``argsrepr``. ``held_within_s``: a taken message
    counts only if it was taken that recently (kombu's ``unacked_index`` says when) — for
    work that would beat once started, a message held longer by a worker that never
    started it is a dead worker's, which the broker gives back only after its 12 h
    visibility timeout."""
    pipe = ctx.redis.pipeline(transaction=True)
    for queue in queues:
        for key in (queue, *(f"{queue}{_PRIORITY_SEP}{p}" for p in _PRIORITIES)):
            pipe.lrange(key, 0, -1)
    pipe.hgetall(_UNACKED)
    pipe.zrange(_UNACKED_INDEX, 0, -1, withscores=True)
    *waiting, held, taken_at = pipe.execute()
    if held_within_s is not None:
        since = now() - held_within_s
        when = dict(taken_at)
        held = {tag: raw for tag, raw in held.items() if when.get(tag, since) >= since}
    found: set[str] = set()
    for raw in [m for messages in waiting for m in messages] + list(held.values()):
        found.update(RECORD_ID.findall(raw))
    return found


def _resend_lost(ctx: WorkerContext, acted: dict[str, list[str]]) -> None:
    """Queued jobs and waiting data sets whose message the broker no longer holds, in two
    rounds in a row: a message is only out of sight for the instant between a worker
    taking it from its queue and recording it as unacknowledged."""
    s = ctx.settings
    waiting = [(ctx.jobs, j) for j in map(ctx.jobs.get, ctx.jobs.stale(s.requeue_lost_after_s))
               if j is not None and j["status"] == "queued"]
    waiting += [(ctx.datasets, d) for d in map(ctx.datasets.get,
                                                 ctx.datasets.stale(s.requeue_lost_after_s))
                if d is not None and d["status"] == "uploaded"]
    missing_key = f"{s.key_prefix}supervisor:missing"
    ids = {r["id"] for _, r in waiting}
    gone = [i for i in ctx.redis.hkeys(missing_key) if i not in ids]  # claimed meanwhile
    if gone:
        ctx.redis.hdel(missing_key, *gone)
    if not waiting:
        return
    queues = {s.default_queue, *(r.get("queue") or s.default_queue for _, r in waiting)}
    present = waiting_in_broker(ctx, queues)
    for store, record in waiting:
        record_id = record["id"]
        if record_id in present:
            ctx.redis.hdel(missing_key, record_id)
            store.beat(record_id)  # looked at again a period later
            continue
        if not ctx.redis.hsetnx(missing_key, record_id, now()):  # missing twice: lost
            ctx.redis.hdel(missing_key, record_id)
            log.warning("%s %s waited with no message in the broker; sending it again",
                        store.kind, record_id)
            store.beat(record_id)
            _send_first_task(ctx, store, record, resume=False)
            acted["requeued"].append(record_id)


def _send_first_task(ctx: WorkerContext, store: RecordStore, record: dict[str, Any],
                     resume: bool) -> None:
    """Send a job's first task (to its queue) or a data set's validation again;
    ``resume``: it may take the record over from a worker that stopped beating."""
    s = ctx.settings
    if store is ctx.jobs:
        celery_app.send_task(TASK_FOR_JOB_TYPE[record["type"]], args=(record["id"],),
                             kwargs={"resume": resume},
                             queue=record.get("queue") or s.default_queue)
    else:
        celery_app.send_task(TASK_VALIDATE, args=(record["id"],), kwargs={"resume": resume},
                             queue=s.default_queue)


def _waits_for_parts(ctx: WorkerContext, job: dict[str, Any]) -> bool:
    """Whether a running job that stopped beating has fanned-out parts still waiting in
    the broker (none of them started yet, so none beats): on Redis, only if a message
    still names the job; RabbitMQ keeps every message until a worker acknowledges it."""
    if not fanout.pending(ctx.jobs, job["id"]):
        return False  # nothing fanned out, or the follow-up was lost: resume the job
    if not broker_is_redis():
        return True
    queue = job.get("queue") or ctx.settings.default_queue
    # no part beats, so a part's message taken longer ago than a beat's staleness was
    # taken by a worker that died before starting it (never given back on Redis)
    return job["id"] in waiting_in_broker(ctx, {queue},
                                          held_within_s=ctx.settings.stale_after_s)


def _resend_lost_parts(ctx: WorkerContext, acted: dict[str, list[str]]) -> None:
    """Fanned-out parts whose beat stopped: their worker died while siblings may still
    run (and keep the job's own beat fresh). Each is sent again on its own."""
    s = ctx.settings
    for job_id, generation, index in fanout.lost_parts(ctx.jobs, s.stale_after_s):
        sent = fanout.resend(ctx.jobs, job_id, generation, index, s.max_attempts)
        if sent:
            acted["parts_resent"].append(f"{job_id}:{index}")
            ctx.jobs.add_event(job_id, "resent", f"part {index} lost its worker; sent "
                               "again", level="warning", part=index)
        elif sent is False:
            error = {"code": "worker_lost", "message": f"part {index} of this job lost its "
                     f"worker {s.max_attempts} times; giving up",
                     "details": {"attempts": s.max_attempts, "part": index}}
            if ctx.jobs.transition(job_id, "failed", finished_at=now(), error=error)[0]:
                acted["failed"].append(job_id)
                ctx.metrics.incr("jobs_failed")


def _retry(ctx: WorkerContext, store: RecordStore, record: dict[str, Any],
           acted: dict[str, list[str]]) -> None:
    record_id, is_job = record["id"], store is ctx.jobs
    attempts = int(ctx.redis.hincrby(store.key(record_id), "attempts", 1))
    if attempts >= ctx.settings.max_attempts:
        error = {"code": "worker_lost", "message": f"the worker running this stopped "
                 f"responding {attempts} times; giving up", "details": {"attempts": attempts}}
        target = "failed" if is_job else "invalid"
        if store.transition(record_id, target, finished_at=now(), error=error)[0]:
            acted[target].append(record_id)
            if is_job:
                ctx.metrics.incr("jobs_failed")
        return
    log.warning("%s %s lost its worker; sending it again (attempt %d)", store.kind,
                record_id, attempts + 1)
    # a grace period for the new delivery to start beating; the record keeps its stage and
    # progress (the new delivery moves them only forwards, workers.lifecycle.ProgressHold)
    try:
        _send_first_task(ctx, store, record, resume=True)
    except kombu.exceptions.OperationalError as exc:
        # the broker is away: this was no delivery, so it does not count (a long outage
        # must not wear the attempts down to worker_lost); the next round tries again
        ctx.redis.hincrby(store.key(record_id), "attempts", -1)
        log.warning("%s %s: could not be sent again, the broker is unavailable (%s)",
                    store.kind, record_id, type(exc).__name__)
        return
    store.beat(record_id)
    if is_job:
        ctx.jobs.add_event(record_id, "resent", f"the job lost its worker; sent again "
                           f"(attempt {attempts + 1})", level="warning", attempt=attempts + 1)
    acted["resent" if is_job else "revalidated"].append(record_id)


def sweep_due(ctx: WorkerContext) -> bool:
    """Whether this worker sweeps the embedding shards now: none has in the last
    ``embedding_sweep_every_h`` (the lock's lifetime is the period)."""
    s = ctx.settings
    period = int(s.embedding_sweep_every_h * 3600)
    return period > 0 and bool(ctx.redis.set(f"{s.key_prefix}shard-sweep-lock", "1",
                                             nx=True, ex=period))


def _sweep(ctx: WorkerContext) -> None:
    try:
        sweep_shards(ctx.cache_redis, ctx.artifacts, ctx.settings.key_prefix)
    except Exception:  # noqa: BLE001 - the next period tries again
        log.warning("embedding shard sweep failed", exc_info=True)


def supervise_forever(ctx: WorkerContext, stop: threading.Event) -> None:
    s = ctx.settings
    lock = f"{s.key_prefix}supervisor-lock"
    while not stop.wait(s.supervise_every_s):
        try:
            # one worker per round: the lock outlives the round a little
            if ctx.redis.set(lock, "1", nx=True, ex=max(1, int(s.supervise_every_s * 0.9))):
                acted = supervise_once(ctx)
                if any(acted.values()):
                    log.warning("supervisor: %s", {k: v for k, v in acted.items() if v})
                if sweep_due(ctx):  # its own thread: a long sweep delays no round
                    threading.Thread(target=_sweep, args=(ctx,), name="shard-sweep",
                                     daemon=True).start()
        except Exception:  # noqa: BLE001 - Redis away: try again next round
            log.warning("supervisor round failed", exc_info=True)


_STOP = threading.Event()


@worker_ready.connect
def _start(**_: Any) -> None:
    threading.Thread(target=supervise_forever, args=(context(), _STOP), name="supervisor",
                     daemon=True).start()
