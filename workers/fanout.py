"""A job's work fanned out to parts on any worker, with a barrier of our own.

Large select jobs split their embedding into chunk tasks and their scoring into shard
tasks; once every part is done, one follow-up task (``then``) goes on. This used to be a
Celery chord. A chord cannot re-send one part: when a worker died mid-chunk, its
siblings kept the job's heartbeat fresh, so nothing noticed until the broker's
visibility timeout (or the siblings ended and the whole job was resent). Here each part
is a record of its own:

- ``start`` writes the parts (their task and arguments), the set of those pending, and
  the follow-up, under a *generation*: a job resumed from scratch fans out again under a
  new one, and parts of an older one count for nothing (their work still lands in the
  embedding store).
- A running part beats in one index for every job's parts (``live:parts``), beside its
  job's beat; a part whose beat stopped ``stale_after_s`` ago lost its worker, and the
  supervisor sends that part again (``lost_parts``/``resend``), up to ``max_attempts``
  deliveries, and counts it in the job's ``attempts``. An embedding chunk re-sent embeds
  only what the store still lacks (chunks store their vectors as they go).
- ``finish`` removes a finished part atomically; the part that empties the pending set
  sends the follow-up, exactly once whatever was sent twice.

Redis keys (all under the job's record key, removed with the job):
``…:fanout`` (hash: generation, then_task, then_args, queue), ``…:parts`` (hash: index →
task and arguments), ``…:pending`` (set of indices), ``…:part-attempts`` (hash).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from typing import Any

import kombu.exceptions

from core.celery_app import celery_app
from core.records import JobStore, now

log = logging.getLogger("isa.fanout")

#: seconds the fan-out keys outlive their last write (a job ends long before)
_TTL = 7 * 86400

_START = """
redis.call('DEL', KEYS[2], KEYS[3], KEYS[4])
redis.call('HSET', KEYS[1], 'generation', ARGV[1], 'then_task', ARGV[2], 'then_args', ARGV[3],
           'queue', ARGV[4])
for i = 6, #ARGV do
  redis.call('HSET', KEYS[2], i - 6, ARGV[i])
  redis.call('SADD', KEYS[3], i - 6)
end
for k = 1, 4 do redis.call('EXPIRE', KEYS[k], ARGV[5]) end
return 1
"""

#: a part ends: 1 when it was the last of its generation (the caller sends the follow-up),
#: 0 when others are pending, -1 when it belongs to an older generation or ended before
_FINISH = """
redis.call('ZREM', KEYS[4], ARGV[3])
if redis.call('HGET', KEYS[1], 'generation') ~= ARGV[1] then return -1 end
if redis.call('SREM', KEYS[3], ARGV[2]) == 0 then return -1 end
if redis.call('SCARD', KEYS[3]) == 0 then return 1 end
return 0
"""


def _keys(jobs: JobStore, job_id: str) -> dict[str, str]:
    base = jobs.key(job_id)
    return {name: f"{base}:{name}" for name in ("fanout", "parts", "pending", "part-attempts")}


def live_key(jobs: JobStore) -> str:
    """Every running part of every job, scored by its last beat."""
    return f"{jobs.prefix}live:parts"


def member(job_id: str, generation: int, index: int) -> str:
    return f"{job_id}|{generation}|{index}"


def parse_member(name: str) -> tuple[str, int, int]:
    job_id, generation, index = name.split("|")
    return job_id, int(generation), int(index)


def start(jobs: JobStore, job_id: str, task: str, parts: Sequence[Sequence[Any]],
          then_task: str, then_args: Sequence[Any], queue: str) -> int:
    """Record a new generation of ``parts`` (the arguments of one ``task`` each; the job
    id and generation come first) and send them; returns the generation."""
    keys = _keys(jobs, job_id)
    generation = int(jobs.r.hincrby(keys["fanout"], "generations", 1))
    jobs.r.register_script(_START)(
        keys=[keys["fanout"], keys["parts"], keys["pending"], keys["part-attempts"]],
        args=[generation, then_task, json.dumps(list(then_args)), queue, _TTL,
              *(json.dumps({"task": task, "args": list(p)}) for p in parts)])
    for index, args in enumerate(parts):
        celery_app.send_task(task, args=(job_id, generation, index, *args), queue=queue)
    return generation


def current(jobs: JobStore, job_id: str) -> int | None:
    """The job's current fan-out generation (None: it never fanned out)."""
    value = jobs.r.hget(_keys(jobs, job_id)["fanout"], "generation")
    return None if value is None else int(value)


def is_pending(jobs: JobStore, job_id: str, generation: int, index: int) -> bool:
    """Whether the part is of the job's current generation and not finished yet (a
    late copy of a finished part has nothing to do)."""
    return current(jobs, job_id) == generation and \
        bool(jobs.r.sismember(_keys(jobs, job_id)["pending"], index))


def pending(jobs: JobStore, job_id: str) -> int:
    """Parts of the current generation not finished yet."""
    return int(jobs.r.scard(_keys(jobs, job_id)["pending"]))


def beat(jobs: JobStore, job_id: str, generation: int, index: int) -> None:
    """A running part's sign of life."""
    jobs.r.zadd(live_key(jobs), {member(job_id, generation, index): now()})


def finish(jobs: JobStore, job_id: str, generation: int, index: int) -> None:
    """The part is done; the last one of its generation sends the follow-up."""
    keys = _keys(jobs, job_id)
    last = jobs.r.register_script(_FINISH)(
        keys=[keys["fanout"], keys["parts"], keys["pending"], live_key(jobs)],
        args=[generation, index, member(job_id, generation, index)])
    if last == 1:
        fan = jobs.r.hgetall(keys["fanout"])
        celery_app.send_task(fan["then_task"], args=tuple(json.loads(fan["then_args"])),
                             queue=fan["queue"])


def forget(jobs: JobStore, job_id: str, generation: int, index: int) -> None:
    """A part that ended without finishing (its job failed or was cancelled) stops being
    watched."""
    jobs.r.zrem(live_key(jobs), member(job_id, generation, index))


def lost_parts(jobs: JobStore, older_than_s: float) -> list[tuple[str, int, int]]:
    """Running parts with no beat for ``older_than_s``: (job id, generation, index)."""
    return [parse_member(m) for m in
            jobs.r.zrangebyscore(live_key(jobs), 0, now() - older_than_s)]


def resend(jobs: JobStore, job_id: str, generation: int, index: int,
           max_attempts: int) -> bool | None:
    """Send a lost part again (True), or say it has used its ``max_attempts`` deliveries
    (False: its job fails). None: nothing sent — nothing to do (an older generation, the
    part finished, or the job ended: it stops being watched), or the broker is away (it
    stays watched, and the try does not count)."""
    keys = _keys(jobs, job_id)
    name = member(job_id, generation, index)
    if current(jobs, job_id) != generation or \
            not jobs.r.sismember(keys["pending"], index) or \
            jobs.status(job_id) != "running":
        jobs.r.zrem(live_key(jobs), name)
        return None
    attempts = int(jobs.r.hincrby(keys["part-attempts"], index, 1)) + 1
    if attempts > max_attempts:
        jobs.r.zrem(live_key(jobs), name)
        return False
    spec = json.loads(jobs.r.hget(keys["parts"], index) or "{}")
    queue = jobs.r.hget(keys["fanout"], "queue")
    try:
        celery_app.send_task(spec["task"], args=(job_id, generation, index, *spec["args"]),
                             queue=queue)
    except kombu.exceptions.OperationalError as exc:
        # the broker is away: no delivery, none counted; still watched, tried again later
        jobs.r.hincrby(keys["part-attempts"], index, -1)
        log.warning("job %s: part %d could not be sent again, the broker is unavailable "
                    "(%s)", job_id, index, type(exc).__name__)
        return None
    # unwatched until the new copy starts (and beats): it may wait in the queue behind
    # its siblings for long; if its message is lost, the job's own beat stops and the
    # supervisor resumes the job
    jobs.r.zrem(live_key(jobs), name)
    jobs.r.hincrby(jobs.key(job_id), "attempts", 1)  # the job's record shows the retry
    log.warning("job %s: part %d (generation %d) lost its worker; sent again (delivery %d)",
                job_id, index, generation, attempts)
    return True

