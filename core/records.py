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
from collections.abc import Iterable
from typing import Any

import redis

JOB_STATES = ("queued", "running", "succeeded", "failed", "cancelling", "cancelled")
TERMINAL = frozenset({"succeeded", "failed", "cancelled"})
DATASET_STATES = ("uploaded", "validating", "ready", "invalid")

_TRANSITION = """
local cur = redis.call('HGET', KEYS[1], 'status')
if not cur then return {-1, ''} end
local allowed = cjson.decode(ARGV[2])
for _, s in ipairs(allowed) do
  if s == cur then
    if #ARGV > 2 then
      redis.call('HSET', KEYS[1], 'status', ARGV[1], unpack(ARGV, 3))
    else
      redis.call('HSET', KEYS[1], 'status', ARGV[1])
    end
    if cur ~= ARGV[1] then
      redis.call('HINCRBY', KEYS[2], cur, -1)
      redis.call('HINCRBY', KEYS[2], ARGV[1], 1)
    end
    return {1, cur}
  end
end
return {0, cur}
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
    json_fields: frozenset[str] = frozenset()
    int_fields: frozenset[str] = frozenset()
    float_fields: frozenset[str] = frozenset()

    def __init__(self, client: redis.Redis, prefix: str) -> None:
        self.r = client
        self.prefix = prefix
        self._transition = client.register_script(_TRANSITION)

    def key(self, record_id: str) -> str:
        return f"{self.prefix}{self.kind}:{record_id}"

    def index_key(self, tenant: str) -> str:
        return f"{self.prefix}tenant:{tenant}:{self.kind}s"

    def counts_key(self) -> str:
        return f"{self.prefix}counts:{self.kind}"

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
        ok, prev = self._transition(keys=[self.key(record_id), self.counts_key()],
                                    args=[status, json.dumps(list(allowed)), *flat])
        prev = prev.decode() if isinstance(prev, bytes) else prev
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
        if raw.get("status"):
            pipe.hincrby(self.counts_key(), raw["status"], -1)
        pipe.execute()

    def counts(self) -> dict[str, int]:
        return {k: int(v) for k, v in self.r.hgetall(self.counts_key()).items()}


class DatasetStore(RecordStore):
    kind = "dataset"
    transitions = DATASET_TRANSITIONS
    json_fields = frozenset({"options", "report", "error"})
    int_fields = frozenset({"size_bytes", "rows_read", "rows_valid", "rows_skipped"})
    float_fields = frozenset({"created_at", "updated_at"})


class JobStore(RecordStore):
    kind = "job"
    transitions = JOB_TRANSITIONS
    json_fields = frozenset({"request", "result", "error"})
    int_fields = frozenset({"progress_done", "progress_total", "embedded_new", "texts",
                            "texts_unique", "texts_cached"})
    float_fields = frozenset({"created_at", "updated_at", "started_at", "finished_at",
                              "latest_loss"})

    def set_progress(self, job_id: str, stage: str, done: int, total: int) -> None:
        self.r.hset(self.key(job_id), mapping={"stage": stage, "progress_done": done,
                                               "progress_total": total,
                                               "updated_at": now()})

    def add_progress(self, job_id: str, done: int, embedded: int = 0) -> None:
        pipe = self.r.pipeline(transaction=True)
        pipe.hincrby(self.key(job_id), "progress_done", done)
        if embedded:
            pipe.hincrby(self.key(job_id), "embedded_new", embedded)
        pipe.execute()

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

    @staticmethod
    def fingerprint(body: dict[str, Any]) -> str:
        return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()

    def claim(self, tenant: str, key: str, fingerprint: str, job_id: str) -> dict[str, str]:
        """Claim ``key`` for ``job_id``; if already claimed, return the first claim."""
        k = f"{self.prefix}idem:{tenant}:{hashlib.sha256(key.encode()).hexdigest()}"
        mine = {"fingerprint": fingerprint, "job_id": job_id}
        if self.r.set(k, json.dumps(mine), nx=True, ex=self.ttl):
            return mine
        return json.loads(self.r.get(k) or json.dumps(mine))


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
