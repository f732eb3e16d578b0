"""Job and data set records in Redis — the source of truth for state (Celery's result
backend is not: it answers PENDING for any id it never saw).

Each record is a Redis hash. Status changes go through one Lua script that checks the
current status against the allowed predecessors and updates the per-status counters in
the same atomic step, so a job can never move from ``succeeded`` back to ``running``.
"""

from __future__ import annotations

import hashlib
import json
import time
import uuid
from collections.abc import Callable, Iterable
from typing import Any

import redis

JOB_STATES = ("queued", "running", "succeeded", "failed", "cancelling", "cancelled")
TERMINAL = frozenset({"succeeded", "failed", "cancelled"})
DATASET_STATES = ("uploaded", "validating", "ready", "invalid")

# KEYS: record, counts, live index. ARGV: status, allowed (JSON), terminal (JSON), record
# id, now, then field/value pairs. The live index holds every record not yet in a
# terminal status, scored by its last sign of life (the supervisor reads it).
_TRANSITION = """
local cur = redis.call('HGET', KEYS[1], 'status')
if not cur then return {-1, ''} end
local allowed = cjson.decode(ARGV[2])
for _, s in ipairs(allowed) do
  if s == cur then
    if #ARGV > 5 then
      redis.call('HSET', KEYS[1], 'status', ARGV[1], unpack(ARGV, 6))
    else
      redis.call('HSET', KEYS[1], 'status', ARGV[1])
    end
    if cur ~= ARGV[1] then
      redis.call('HINCRBY', KEYS[2], cur, -1)
      redis.call('HINCRBY', KEYS[2], ARGV[1], 1)
    end
    local terminal = false
    for _, t in ipairs(cjson.decode(ARGV[3])) do
      if t == ARGV[1] then terminal = true end
    end
    if terminal then
      redis.call('ZREM', KEYS[3], ARGV[4])
    else
      redis.call('ZADD', KEYS[3], ARGV[5], ARGV[4])
    end
    return {1, cur}
  end
end
return {0, cur}
"""

# KEYS: record. ARGV: done increment, embedded increment. Progress never passes its total
# (a redelivered chunk task reports its texts again).
_ADD_PROGRESS = """
local total = tonumber(redis.call('HGET', KEYS[1], 'progress_total') or '0')
local done = redis.call('HINCRBY', KEYS[1], 'progress_done', ARGV[1])
if total > 0 and done > total then
  redis.call('HSET', KEYS[1], 'progress_done', total)
end
if tonumber(ARGV[2]) ~= 0 then
  redis.call('HINCRBY', KEYS[1], 'embedded_new', ARGV[2])
end
return done
"""

#: allowed predecessors of each job status
JOB_TRANSITIONS: dict[str, tuple[str, ...]] = {
    "running": ("queued", "running"),  # running -> running: a redelivered task resumes
    "succeeded": ("running",),
    "failed": ("queued", "running", "cancelling"),
    "cancelling": ("running",),
    "cancelled": ("queued", "cancelling"),
}
DATASET_TRANSITIONS: dict[str, tuple[str, ...]] = {
    "validating": ("uploaded", "validating"),
    "ready": ("validating",),
    "invalid": ("uploaded", "validating"),
}


def now() -> float:
    return time.time()


def new_id(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:20]}"


class RecordStore:
    """Common machinery of JobStore and DatasetStore."""

    kind: str = ""
    transitions: dict[str, tuple[str, ...]] = {}
    terminal: frozenset[str] = frozenset()
    json_fields: frozenset[str] = frozenset()
    int_fields: frozenset[str] = frozenset()
    float_fields: frozenset[str] = frozenset()

    def __init__(self, client: redis.Redis, prefix: str,
                 on_end: Callable[[str, str], None] | None = None) -> None:
        self.r = client
        self.prefix = prefix
        #: called (record id, status) after a record moves into a terminal status
        self.on_end = on_end
        self._transition = client.register_script(_TRANSITION)
        self._add_progress = client.register_script(_ADD_PROGRESS)

    def key(self, record_id: str) -> str:
        return f"{self.prefix}{self.kind}:{record_id}"

    def index_key(self, tenant: str) -> str:
        return f"{self.prefix}tenant:{tenant}:{self.kind}s"

    def counts_key(self) -> str:
        return f"{self.prefix}counts:{self.kind}"

    def live_key(self) -> str:
        """Records not in a terminal status, scored by their last sign of life."""
        return f"{self.prefix}live:{self.kind}"

    def beat(self, record_id: str) -> None:
        """A sign of life of the work on a record (only while it is live)."""
        self.r.zadd(self.live_key(), {record_id: now()}, xx=True)

    def stale(self, older_than_s: float) -> list[str]:
        """Live records with no sign of life for ``older_than_s`` seconds."""
        return list(self.r.zrangebyscore(self.live_key(), 0, now() - older_than_s))

    def _encode(self, fields: dict[str, Any]) -> dict[str, str]:
        return {k: json.dumps(v) if k in self.json_fields else str(v)
                for k, v in fields.items() if v is not None}

    def _decode(self, raw: dict[str, str]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for k, v in raw.items():
            if k in self.json_fields:
                out[k] = json.loads(v)
            elif k in self.int_fields:
                out[k] = int(float(v))
            elif k in self.float_fields:
                out[k] = float(v)
            else:
                out[k] = v
        return out

    def create(self, tenant: str, record_id: str, status: str, fields: dict[str, Any]) -> None:
        ts = now()
        doc = {"id": record_id, "tenant": tenant, "status": status, "created_at": ts,
               "updated_at": ts, **fields}
        pipe = self.r.pipeline(transaction=True)
        pipe.hset(self.key(record_id), mapping=self._encode(doc))
        pipe.zadd(self.index_key(tenant), {record_id: ts})
        pipe.hincrby(self.counts_key(), status, 1)
        if status not in self.terminal:
            pipe.zadd(self.live_key(), {record_id: ts})
        pipe.execute()

    def get(self, record_id: str, tenant: str | None = None) -> dict[str, Any] | None:
        """The record, or None when it does not exist or belongs to another tenant."""
        raw = self.r.hgetall(self.key(record_id))
        if not raw or (tenant is not None and raw.get("tenant") != tenant):
            return None
        return self._decode(raw)

    def update(self, record_id: str, **fields: Any) -> None:
        self.r.hset(self.key(record_id), mapping=self._encode({**fields, "updated_at": now()}))

    def transition(self, record_id: str, status: str, *, only_from: tuple[str, ...] | None = None,
                   **fields: Any) -> tuple[bool, str]:
        """Move to ``status`` if the current status allows it (``only_from`` narrows the
        allowed predecessors further). Returns (moved, previous status)."""
        allowed = self.transitions[status]
        if only_from is not None:
            allowed = tuple(s for s in allowed if s in only_from)
        flat: list[str] = []
        for k, v in self._encode({**fields, "updated_at": now()}).items():
            flat += [k, v]
        ok, prev = self._transition(
            keys=[self.key(record_id), self.counts_key(), self.live_key()],
            args=[status, json.dumps(list(allowed)), json.dumps(sorted(self.terminal)),
                  record_id, now(), *flat])
        prev = prev.decode() if isinstance(prev, bytes) else prev
        if ok == 1 and status in self.terminal and self.on_end is not None:
            self.on_end(record_id, status)
        return ok == 1, prev

    def list(self, tenant: str, *, offset: int = 0, limit: int = 50,
             where: dict[str, str] | None = None) -> tuple[list[dict[str, Any]], int]:
        """Newest first; filters are applied before paging."""
        ids = self.r.zrevrange(self.index_key(tenant), 0, -1)
        records = []
        pipe = self.r.pipeline(transaction=False)
        for rid in ids:
            pipe.hgetall(self.key(rid))
        for raw in pipe.execute():
            if not raw:
                continue
            if where and any(raw.get(k) != v for k, v in where.items() if v is not None):
                continue
            records.append(raw)
        return [self._decode(r) for r in records[offset:offset + limit]], len(records)

    def delete(self, record_id: str, tenant: str) -> None:
        raw = self.r.hgetall(self.key(record_id))
        pipe = self.r.pipeline(transaction=True)
        pipe.delete(self.key(record_id))
        pipe.zrem(self.index_key(tenant), record_id)
        pipe.zrem(self.live_key(), record_id)
        if raw.get("status"):
            pipe.hincrby(self.counts_key(), raw["status"], -1)
        pipe.execute()

    def counts(self) -> dict[str, int]:
        return {k: int(v) for k, v in self.r.hgetall(self.counts_key()).items()}

    def live_count(self, tenant: str) -> int:
        """How many of the tenant's records are not finished (for quotas). Reads the live
        index, which holds only unfinished work across all tenants."""
        ids = self.r.zrange(self.live_key(), 0, -1)
        pipe = self.r.pipeline(transaction=False)
        for record_id in ids:
            pipe.hget(self.key(record_id), "tenant")
        return sum(t == tenant for t in pipe.execute())


class DatasetStore(RecordStore):
    """Data set records; also the bytes each tenant stores (for the quota)."""

    kind = "dataset"
    transitions = DATASET_TRANSITIONS
    terminal = frozenset({"ready", "invalid"})
    json_fields = frozenset({"options", "report", "error"})
    int_fields = frozenset({"size_bytes", "rows_read", "rows_valid", "rows_skipped",
                            "attempts"})
    float_fields = frozenset({"created_at", "updated_at"})

    def _bytes_key(self, tenant: str) -> str:
        return f"{self.prefix}tenant:{tenant}:stored_bytes"

    def stored_bytes(self, tenant: str) -> int:
        return int(self.r.get(self._bytes_key(tenant)) or 0)

    def create(self, tenant: str, record_id: str, status: str, fields: dict[str, Any]) -> None:
        super().create(tenant, record_id, status, fields)
        self.r.incrby(self._bytes_key(tenant), int(fields.get("size_bytes", 0)))

    def set_size(self, record_id: str, tenant: str, size: int) -> None:
        """An imported file's size, once read (counted against the tenant's quota)."""
        old = int(self.r.hget(self.key(record_id), "size_bytes") or 0)
        pipe = self.r.pipeline(transaction=True)
        pipe.hset(self.key(record_id), "size_bytes", size)
        pipe.incrby(self._bytes_key(tenant), size - old)
        pipe.execute()

    def delete(self, record_id: str, tenant: str) -> None:
        size = self.r.hget(self.key(record_id), "size_bytes")
        super().delete(record_id, tenant)
        if size is not None:
            self.r.decrby(self._bytes_key(tenant), int(size))


class JobStore(RecordStore):
    kind = "job"
    transitions = JOB_TRANSITIONS
    terminal = TERMINAL
    json_fields = frozenset({"request", "result", "error", "webhook"})
    int_fields = frozenset({"progress_done", "progress_total", "embedded_new", "texts",
                            "texts_unique", "texts_cached", "attempts"})
    float_fields = frozenset({"created_at", "updated_at", "started_at", "finished_at",
                              "latest_loss"})

    def set_progress(self, job_id: str, stage: str, done: int, total: int) -> None:
        self.r.hset(self.key(job_id), mapping={"stage": stage, "progress_done": done,
                                               "progress_total": total,
                                               "updated_at": now()})

    def add_progress(self, job_id: str, done: int, embedded: int = 0) -> None:
        """Count ``done`` more units of the current stage (never past its total)."""
        self._add_progress(keys=[self.key(job_id)], args=[done, embedded])

    def status(self, job_id: str) -> str | None:
        return self.r.hget(self.key(job_id), "status")


class AsyncJobReader:
    """Reads job records on the event loop (the status-polling hot path)."""

    def __init__(self, client: Any, store: JobStore) -> None:
        self.r, self.store = client, store

    async def get(self, job_id: str, tenant: str) -> dict[str, Any] | None:
        raw = await self.r.hgetall(self.store.key(job_id))
        if not raw or raw.get("tenant") != tenant:
            return None
        return self.store._decode(raw)


class IdempotencyKeys:
    """``Idempotency-Key`` header → the job it created, for ``ttl`` seconds."""

    def __init__(self, client: redis.Redis, prefix: str, ttl: int) -> None:
        self.r, self.prefix, self.ttl = client, prefix, ttl
        self._release = client.register_script(
            "local v = redis.call('GET', KEYS[1]) "
            "if v and cjson.decode(v)['job_id'] == ARGV[1] then redis.call('DEL', KEYS[1]) end")

    @staticmethod
    def fingerprint(body: dict[str, Any]) -> str:
        return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()

    def _key(self, tenant: str, key: str) -> str:
        return f"{self.prefix}idem:{tenant}:{hashlib.sha256(key.encode()).hexdigest()}"

    def claim(self, tenant: str, key: str, fingerprint: str, job_id: str) -> dict[str, str]:
        """Claim ``key`` for ``job_id`` (one atomic SET NX: of concurrent claims exactly
        one wins); if already claimed, return the first claim."""
        k = self._key(tenant, key)
        mine = {"fingerprint": fingerprint, "job_id": job_id}
        while not self.r.set(k, json.dumps(mine), nx=True, ex=self.ttl):
            first = self.r.get(k)
            if first is not None:  # (None: the claim expired or was released meanwhile)
                return json.loads(first)
        return mine

    def release(self, tenant: str, key: str, job_id: str) -> None:
        """Give the key up if ``job_id`` still holds it (its job could not be created),
        so that a retry of the request is not refused."""
        self._release(keys=[self._key(tenant, key)], args=[job_id])


class Metrics:
    """Counters the workers write and the gateway's /metrics reads (all in Redis, so every
    worker process and machine adds to the same numbers)."""

    def __init__(self, client: redis.Redis, prefix: str) -> None:
        self.r, self.key = client, f"{prefix}metrics"

    def incr(self, name: str, amount: float = 1) -> None:
        self.r.hincrbyfloat(self.key, name, amount)

    def observe_stage(self, stage: str, seconds: float) -> None:
        pipe = self.r.pipeline(transaction=False)
        pipe.hincrbyfloat(self.key, f"stage_seconds_sum:{stage}", seconds)
        pipe.hincrbyfloat(self.key, f"stage_seconds_count:{stage}", 1)
        pipe.execute()

    def all(self) -> dict[str, float]:
        return {k: float(v) for k, v in self.r.hgetall(self.key).items()}


def chunks(seq: list[Any], size: int) -> Iterable[tuple[int, int]]:
    for start in range(0, len(seq), size):
        yield start, min(len(seq), start + size)
