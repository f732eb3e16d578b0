"""Job and data set records in Redis — the source of truth for state (Celery's result
backend is not: it answers PENDING for any id it never saw).

Each record is a Redis hash. Status changes go through one Lua script that checks the
current status against the allowed predecessors and updates the per-status counters in
the same atomic step, so a job can never move from ``succeeded`` back to ``running``.

Listings read sorted-set indexes, scored by creation time, kept per tenant: all records,
and one per filter (``status``; for jobs also ``type`` and ``type`` + ``status``). The
transition script moves a record between its status indexes in the same atomic step, so
a page costs O(log n + page) whatever the tenant holds. Pages are cut by an opaque cursor
(the creation time and id of the last record shown), so records created while a client
pages through appear before its position and never shift what it has not seen yet.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import json
import re
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import redis

from core import events
from core.events import LUA_EVENTS
from core.redis_pipelined import hgetall_each

JOB_STATES = ("queued", "running", "succeeded", "failed", "cancelling", "cancelled")
TERMINAL = frozenset({"succeeded", "failed", "cancelled"})
DATASET_STATES = ("uploaded", "validating", "ready", "invalid")

# KEYS: record, counts, live index. ARGV: status, allowed (JSON), terminal (JSON), record
# id, now, listing-index prefix and suffix (around the tenant), indexed fields (JSON),
# then field/value pairs. The live index holds every record not yet in a terminal status,
# scored by its last sign of life (the supervisor reads it). The listing indexes' names
# depend on the record's tenant and type, read here, so they are built in the script (one
# Redis, not a cluster).
_TRANSITION = """
local cur = redis.call('HGET', KEYS[1], 'status')
if not cur then return {-1, ''} end
local allowed = cjson.decode(ARGV[2])
for _, s in ipairs(allowed) do
  if s == cur then
    if #ARGV > 8 then
      redis.call('HSET', KEYS[1], 'status', ARGV[1], unpack(ARGV, 9))
    else
      redis.call('HSET', KEYS[1], 'status', ARGV[1])
    end
    if cur ~= ARGV[1] then
      redis.call('HINCRBY', KEYS[2], cur, -1)
      redis.call('HINCRBY', KEYS[2], ARGV[1], 1)
      local tenant = redis.call('HGET', KEYS[1], 'tenant')
      local created = redis.call('HGET', KEYS[1], 'created_at')
      local base = ARGV[6] .. tenant .. ARGV[7]
      local bases = {base}
      for _, f in ipairs(cjson.decode(ARGV[8])) do
        local v = redis.call('HGET', KEYS[1], f)
        if v then table.insert(bases, base .. ':' .. f .. ':' .. v) end
      end
      for _, b in ipairs(bases) do
        redis.call('ZREM', b .. ':status:' .. cur, ARGV[4])
        redis.call('ZADD', b .. ':status:' .. ARGV[1], created, ARGV[4])
      end
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

# KEYS: record. ARGV: field, value, ... Writes only to a record that exists: a worker still
# busy with a deleted data set or job must not write a partial record back (it would
# outlive the delete, counted nowhere and seen by no listing).
_HSET_IF_EXISTS = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('HSET', KEYS[1], unpack(ARGV))
return 1
"""

# KEYS: record, its stage history, its events. ARGV: when, the history's TTL, the stage,
# done, total, then field, value pairs. A progress report in one round trip: the fields,
# the stage's first time in the history (ZADD NX keeps the order the job first reached its
# stages in), and an event for a new stage or a tenth of the stage done (core.events).
_SET_PROGRESS = LUA_EVENTS + """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
local stage = redis.call('HGET', KEYS[1], 'stage')
local before = tonumber(redis.call('HGET', KEYS[1], 'progress_done') or '0')
redis.call('HSET', KEYS[1], unpack(ARGV, 6))
redis.call('ZADD', KEYS[2], 'NX', ARGV[1], ARGV[3])
redis.call('EXPIRE', KEYS[2], ARGV[2])
local done, total = tonumber(ARGV[4]), tonumber(ARGV[5])
if stage ~= ARGV[3] then
  add_event(KEYS[3], ARGV[1], 'stage', 'info', 'stage ' .. ARGV[3],
            {stage = ARGV[3], done = done, total = total})
else
  milestone(KEYS[3], ARGV[1], stage, before, done, total)
end
return 1
"""

# KEYS: record, the tenant's stored-bytes counter. ARGV: size. An import's size, counted
# against the quota only while the record exists (a delete already gave its bytes back).
_SET_SIZE = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
local old = tonumber(redis.call('HGET', KEYS[1], 'size_bytes') or '0')
redis.call('HSET', KEYS[1], 'size_bytes', ARGV[1])
redis.call('INCRBY', KEYS[2], tonumber(ARGV[1]) - old)
return 1
"""

# KEYS: record, its events. ARGV: done increment, embedded increment, when. Progress never
# passes its total (a redelivered task reports again); a deleted record stays deleted.
_ADD_PROGRESS = LUA_EVENTS + """
if redis.call('EXISTS', KEYS[1]) == 0 then return -1 end
local total = tonumber(redis.call('HGET', KEYS[1], 'progress_total') or '0')
local shown = tonumber(redis.call('HGET', KEYS[1], 'progress_done') or '0')
local done = redis.call('HINCRBY', KEYS[1], 'progress_done', ARGV[1])
if total > 0 and done > total then
  redis.call('HSET', KEYS[1], 'progress_done', total)
  done = total
end
if tonumber(ARGV[2]) ~= 0 then
  redis.call('HINCRBY', KEYS[1], 'embedded_new', ARGV[2])
end
milestone(KEYS[2], ARGV[3], redis.call('HGET', KEYS[1], 'stage') or '', shown, done, total)
return done
"""

# KEYS: record, its parts' progress, its events. ARGV: the part, its count so far, newly
# embedded, when.
# A part's count is its own total: a re-sent part adds only what passes the count its
# lost copy reached, so no unit is counted twice (and the job's count never passes its
# total).
_ADD_PART_PROGRESS = LUA_EVENTS + """
if redis.call('EXISTS', KEYS[1]) == 0 then return -1 end
local before = tonumber(redis.call('HGET', KEYS[2], ARGV[1]) or '0')
local now = tonumber(ARGV[2])
if tonumber(ARGV[3]) ~= 0 then
  redis.call('HINCRBY', KEYS[1], 'embedded_new', ARGV[3])
end
if now <= before then return 0 end
redis.call('HSET', KEYS[2], ARGV[1], now)
redis.call('EXPIRE', KEYS[2], 7 * 86400)
local total = tonumber(redis.call('HGET', KEYS[1], 'progress_total') or '0')
local shown = tonumber(redis.call('HGET', KEYS[1], 'progress_done') or '0')
local done = redis.call('HINCRBY', KEYS[1], 'progress_done', now - before)
if total > 0 and done > total then
  redis.call('HSET', KEYS[1], 'progress_done', total)
  done = total
end
milestone(KEYS[3], ARGV[4], redis.call('HGET', KEYS[1], 'stage') or '', shown, done, total)
return now - before
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


#: version of the listing indexes' layout (RecordStore.ensure_indexes)
INDEX_VERSION = "2"


def now() -> float:
    return time.time()


def new_id(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:20]}"


#: a job's or a data set's id, as ``new_id`` makes them (found in text, e.g. a message)
RECORD_ID = re.compile(r"\b(?:job|ds)_[0-9a-f]{20}\b")


class InvalidCursor(ValueError):
    """A listing cursor this service did not write."""


def encode_cursor(created_at: float, record_id: str) -> str:
    return base64.urlsafe_b64encode(f"{created_at!r}|{record_id}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[float, str]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        score, record_id = raw.split("|", 1)
        value = float(score)
    except (binascii.Error, UnicodeDecodeError, ValueError) as exc:
        raise InvalidCursor(cursor) from exc
    if not record_id or value != value:  # NaN is no position
        raise InvalidCursor(cursor)
    return value, record_id


@dataclass
class Page:
    """One page of a listing: the records, how many match the filter in all, and the
    cursor of the next page (None on the last)."""

    records: list[dict[str, Any]]
    count: int
    next_after: str | None


def cut_page(entries: list[tuple[Any, float]], limit: int
             ) -> tuple[list[tuple[Any, float]], str | None]:
    """The first ``limit`` of up to ``limit + 1`` index entries (newest first), and the
    cursor after them when the one more says another page follows."""
    more = len(entries) > limit
    entries = entries[:limit]
    return entries, encode_cursor(entries[-1][1], entries[-1][0]) if more else None


class RecordStore:
    """Common machinery of JobStore and DatasetStore."""

    kind: str = ""
    transitions: dict[str, tuple[str, ...]] = {}
    terminal: frozenset[str] = frozenset()
    json_fields: frozenset[str] = frozenset()
    int_fields: frozenset[str] = frozenset()
    float_fields: frozenset[str] = frozenset()
    #: fields fixed at creation that listings filter by (each with its own index)
    indexed_fields: tuple[str, ...] = ()
    #: every status a record can have
    states: tuple[str, ...] = ()
    #: keys beside a record (``{key}:{side}``), removed with it: here the delivery logs
    #: of its webhook events (``webhook_log_key``)
    SIDE_KEYS: tuple[str, ...] = ("webhooks",)

    def __init__(self, client: redis.Redis, prefix: str,
                 on_moved: Callable[[RecordStore, str, str], None] | None = None) -> None:
        self.r = client
        self.prefix = prefix
        #: called (this store, record id, new status) after a record changed status, once
        #: per change (a running job resumed is no change): where webhook events start
        #: (``core.webhook_events.announce``)
        self.on_moved = on_moved
        self._transition = client.register_script(_TRANSITION)
        self._add_progress = client.register_script(_ADD_PROGRESS)
        self._hset_if_exists = client.register_script(_HSET_IF_EXISTS)
        self._set_size = client.register_script(_SET_SIZE)
        self._set_progress = client.register_script(_SET_PROGRESS)
        self._add_part_progress = client.register_script(_ADD_PART_PROGRESS)

    def key(self, record_id: str) -> str:
        return f"{self.prefix}{self.kind}:{record_id}"

    def index_key(self, tenant: str, where: dict[str, str | None] | None = None) -> str:
        """The listing index of the tenant's records matching ``where`` (status and the
        indexed fields; None values are no filter)."""
        key = f"{self.prefix}tenant:{tenant}:{self.kind}s"
        where = {k: v for k, v in (where or {}).items() if v is not None}
        if "metadata" in where:  # (key, value): an index of its own, not split by status
            if len(where) > 1:
                raise ValueError(f"{self.kind}s filtered by metadata take no other filter")
            return f"{key}:meta:{metadata_digest(*where['metadata'])}"
        for field in self.indexed_fields:
            if field in where:
                key += f":{field}:{where.pop(field)}"
        if "status" in where:
            key += f":status:{where.pop('status')}"
        if where:
            raise ValueError(f"{self.kind}s are not indexed by {sorted(where)}")
        return key

    def _index_keys(self, tenant: str, doc: dict[str, Any]) -> list[str]:
        """Every listing index a record with these fields belongs to."""
        keys = [self.index_key(tenant), self.index_key(tenant, {"status": doc["status"]})]
        for field in self.indexed_fields:
            if doc.get(field) is not None:
                keys += [self.index_key(tenant, {field: doc[field]}),
                         self.index_key(tenant, {field: doc[field], "status": doc["status"]})]
        metadata = doc.get("metadata") or {}
        if isinstance(metadata, str):  # as stored (a record read raw, to delete it)
            metadata = json.loads(metadata)
        keys += [self.index_key(tenant, {"metadata": pair}) for pair in metadata.items()]
        return keys

    def counts_key(self) -> str:
        return f"{self.prefix}counts:{self.kind}"

    def live_key(self) -> str:
        """Records not in a terminal status, scored by their last sign of life."""
        return f"{self.prefix}live:{self.kind}"

    def beat(self, record_id: str) -> None:
        """A sign of life of the work on a record (only while it is live)."""
        self.r.zadd(self.live_key(), {record_id: now()}, xx=True)

    def last_beat(self, record_id: str) -> float | None:
        """The record's last sign of life (None: not live)."""
        return self.r.zscore(self.live_key(), record_id)

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
        for index in self._index_keys(tenant, doc):
            pipe.zadd(index, {record_id: ts})
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

    def update(self, record_id: str, **fields: Any) -> bool:
        """Set fields of an existing record; False (and nothing written) if it is gone."""
        return self._write(record_id, {**fields, "updated_at": now()})

    def _write(self, record_id: str, fields: dict[str, Any]) -> bool:
        flat: list[Any] = []
        for k, v in self._encode(fields).items():
            flat += [k, v]
        if not flat:
            return bool(self.r.exists(self.key(record_id)))
        return bool(self._hset_if_exists(keys=[self.key(record_id)], args=flat))

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
                  record_id, now(), f"{self.prefix}tenant:", f":{self.kind}s",
                  json.dumps(list(self.indexed_fields)), *flat])
        prev = prev.decode() if isinstance(prev, bytes) else prev
        if ok == 1 and prev != status:
            self._moved(record_id, status, prev, fields)
            if self.on_moved is not None:
                self.on_moved(self, record_id, status)
        return ok == 1, prev

    def _moved(self, record_id: str, status: str, prev: str, fields: dict[str, Any]) -> None:
        """After a record changed status (before ``on_moved`` announces it): nothing here."""

    def list(self, tenant: str, *, limit: int = 50, after: str | None = None,
             offset: int = 0, where: dict[str, str | None] | None = None) -> Page:
        """Newest first, ``limit`` records after the cursor ``after`` (or after skipping
        ``offset``) among those matching ``where``. Reads one index: O(log n + page)."""
        index = self.index_key(tenant, where)
        if after is not None:
            score, last_id = decode_cursor(after)
            # Ties on the creation time come in descending id order: skip those up to and
            # including the cursor's record. Fetch one more than the page to know whether
            # another page follows, and a few more for the (rare) ties.
            entries, start, want = [], 0, limit + 17
            while True:
                batch = self.r.zrevrangebyscore(index, score, "-inf", start=start,
                                                num=want, withscores=True)
                entries += [(rid, s) for rid, s in batch if s < score or rid < last_id]
                if len(entries) > limit or len(batch) < want:
                    break
                start += len(batch)
        else:
            entries = self.r.zrevrange(index, offset, offset + limit, withscores=True)
        return self.page_of(entries, limit, self.r.zcard(index))

    def page_of(self, entries: list[tuple[Any, float]], limit: int, count: int) -> Page:
        """The page of ``entries`` (record id, index score; up to ``limit + 1``, newest
        first): the first ``limit`` records read in one round trip, and the cursor after
        them when one more entry says another page follows."""
        entries, next_after = cut_page(entries, limit)
        pipe = self.r.pipeline(transaction=False)
        for rid, _ in entries:
            pipe.hgetall(self.key(rid))
        records = [self._decode(raw) for raw in pipe.execute() if raw]
        return Page(records, count, next_after)

    def delete(self, record_id: str, tenant: str) -> None:
        raw = self.r.hgetall(self.key(record_id))
        pipe = self.r.pipeline(transaction=True)
        pipe.delete(self.key(record_id))
        for index in self._index_keys(tenant, raw) if raw.get("status") else \
                [self.index_key(tenant)]:
            pipe.zrem(index, record_id)
        pipe.zrem(self.live_key(), record_id)
        if raw.get("status"):
            pipe.hincrby(self.counts_key(), raw["status"], -1)
        pipe.delete(*(f"{self.key(record_id)}:{side}" for side in self.SIDE_KEYS))
        pipe.execute()

    def webhook_log_key(self, record_id: str) -> str:
        """The delivery logs of the record's webhook events other than a job's end (that
        one is the job's ``webhook`` field): a hash, event type -> its log."""
        return f"{self.key(record_id)}:webhooks"

    def counts(self) -> dict[str, int]:
        return {k: int(v) for k, v in self.r.hgetall(self.counts_key()).items()}

    def live_count(self, tenant: str) -> int:
        """How many of the tenant's records are not finished (for quotas): the sizes of
        its non-terminal status indexes, O(1)."""
        pipe = self.r.pipeline(transaction=False)
        for status in (s for s in self.states if s not in self.terminal):
            pipe.zcard(self.index_key(tenant, {"status": status}))
        return sum(pipe.execute())

    def ensure_indexes(self) -> int:
        """Build the filter indexes of records written before they existed (once per
        Redis; the gateway calls it at start). Returns how many records it indexed."""
        marker = f"{self.prefix}index_version:{self.kind}"
        if self.r.get(marker) == INDEX_VERSION:
            return 0
        done = 0
        suffix = f":{self.kind}s"
        for index in self.r.scan_iter(match=f"{self.prefix}tenant:*{suffix}", count=1000):
            tenant = index[len(f"{self.prefix}tenant:"):-len(suffix)]
            if ":" in tenant:  # a filter index, not a tenant's main one
                continue
            for rid, ts in self.r.zrange(index, 0, -1, withscores=True):
                raw = self.r.hgetall(self.key(rid))
                if not raw:
                    continue
                pipe = self.r.pipeline(transaction=False)
                for key in self._index_keys(tenant, raw):
                    pipe.zadd(key, {rid: ts})
                pipe.execute()
                done += 1
        self.r.set(marker, INDEX_VERSION)
        return done


class DatasetStore(RecordStore):
    """Data set records; also the bytes each tenant stores (for the quota)."""

    kind = "dataset"
    states = DATASET_STATES
    transitions = DATASET_TRANSITIONS
    terminal = frozenset({"ready", "invalid"})
    json_fields = frozenset({"options", "report", "error", "hub", "metadata", "stats"})
    int_fields = frozenset({"size_bytes", "rows_read", "rows_valid", "rows_skipped",
                            "attempts", "column_map_v", "examples"})
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
        self._set_size(keys=[self.key(record_id), self._bytes_key(tenant)], args=[size])

    def delete(self, record_id: str, tenant: str) -> None:
        size = self.r.hget(self.key(record_id), "size_bytes")
        super().delete(record_id, tenant)
        if size is not None:
            self.r.decrby(self._bytes_key(tenant), int(size))


def metadata_digest(key: str, value: str) -> str:
    """A metadata pair's part of its index's name: bounded, whatever the pair holds."""
    return hashlib.sha256(f"{key}\x00{value}".encode()).hexdigest()[:24]


class JobStore(RecordStore):
    kind = "job"
    indexed_fields = ("type",)
    states = JOB_STATES
    transitions = JOB_TRANSITIONS
    terminal = TERMINAL
    json_fields = frozenset({"request", "result", "error", "webhook", "score_cache",
                             "metadata"})
    int_fields = frozenset({"progress_done", "progress_total", "embedded_new", "texts",
                            "texts_unique", "texts_cached", "attempts"})
    float_fields = frozenset({"created_at", "updated_at", "started_at", "finished_at",
                              "latest_loss"})

    def set_progress(self, job_id: str, stage: str, done: int, total: int) -> None:
        """The job's stage and progress, and the stage in its history: the order the job
        first reached its stages in (a resumed run replays the early ones without
        showing them: workers.lifecycle.ProgressHold)."""
        at = now()
        flat: list[Any] = []
        for k, v in self._encode({"stage": stage, "progress_done": done,
                                  "progress_total": total, "updated_at": at}).items():
            flat += [k, v]
        key = self.key(job_id)
        self._set_progress(keys=[key, f"{key}:stages", events.events_key(key)],
                           args=[at, 7 * 86400, stage, done, total, *flat])

    def stages(self, job_id: str) -> list[str]:
        """The stages the job reached, in the order it first reached them."""
        return [stage for stage, _ in self.stage_times(job_id)]

    def stage_times(self, job_id: str) -> list[tuple[str, float]]:
        """The stages the job reached with the time it first reached each, in order."""
        return [(stage, float(at)) for stage, at in
                self.r.zrange(f"{self.key(job_id)}:stages", 0, -1, withscores=True)]

    def add_progress(self, job_id: str, done: int, embedded: int = 0) -> None:
        """Count ``done`` more units of the current stage (never past its total)."""
        key = self.key(job_id)
        self._add_progress(keys=[key, events.events_key(key)], args=[done, embedded, now()])

    def add_part_progress(self, job_id: str, part: str, done: int, embedded: int = 0) -> int:
        """Part ``part`` of a fanned-out stage has ``done`` units done so far (a re-sent
        copy counts what its lost copy left done too); the job's progress moves only by
        what passes the part's count before. Returns that step."""
        key = self.key(job_id)
        return int(self._add_part_progress(
            keys=[key, f"{key}:part-progress", events.events_key(key)],
            args=[part, done, embedded, now()]))

    def status(self, job_id: str) -> str | None:
        return self.r.hget(self.key(job_id), "status")

    def _derived_key(self, dataset_id: str) -> str:
        return f"{self.prefix}dataset:{dataset_id}:jobs"

    def link_datasets(self, job_id: str, dataset_ids: list[str]) -> None:
        """Record that the job reads these data sets (its results derive from them)."""
        pipe = self.r.pipeline(transaction=False)
        for dataset_id in dataset_ids:
            pipe.sadd(self._derived_key(dataset_id), job_id)
        pipe.execute()

    def of_dataset(self, dataset_id: str) -> list[str]:
        """The jobs that read the data set (some may be deleted since)."""
        return sorted(self.r.smembers(self._derived_key(dataset_id)))

    def forget_dataset(self, dataset_id: str) -> None:
        self.r.delete(self._derived_key(dataset_id))

    #: keys beside a job's record, removed with it: tasks per worker, the stages it
    #: reached, its fan-out (workers.fanout), its webhook logs
    SIDE_KEYS = ("workers:embedding", "workers:scoring", "stages", "fanout", "parts",
                 "pending", "part-attempts", "part-progress", "events",
                 *RecordStore.SIDE_KEYS)

    def _moved(self, record_id: str, status: str, prev: str, fields: dict[str, Any]) -> None:
        """A status change is an event of the job's log, written before the job's end is
        announced (its webhook); a reader that sees the new status may still have to read
        the log once more to find it (``Client.iter_job_events`` does)."""
        error = fields.get("error") or {}
        level = "error" if status == "failed" else "info"
        message = f"{status}: {error.get('message')}" if error else status
        self.add_event(record_id, "status", message[:1000], level=level, status=status,
                       previous=prev, **({"code": error.get("code")} if error else {}))

    def add_event(self, job_id: str, kind: str, message: str, *, level: str = "info",
                  **data: Any) -> None:
        """One event in the job's log (``core.events``), if the job still exists."""
        if self.r.exists(self.key(job_id)):
            events.add(self.r, self.key(job_id), kind, message, level=level, **data)

    def events(self, job_id: str, *, after: str | None = None, limit: int = 100
               ) -> tuple[list[dict[str, Any]], bool]:
        """The job's events after the id ``after``, oldest first, and whether more follow."""
        return events.read(self.r, self.key(job_id), after=after, limit=limit)

    def count_task(self, job_id: str, worker: str, kind: str = "embedding") -> None:
        """One more of the job's fanned-out ``kind`` tasks ran on ``worker`` (a Celery
        node name)."""
        key = f"{self.key(job_id)}:workers:{kind}"
        pipe = self.r.pipeline(transaction=False)
        pipe.hincrby(key, worker, 1)
        pipe.expire(key, 7 * 86400)
        pipe.execute()

    def task_workers(self, job_id: str, kind: str = "embedding") -> dict[str, int]:
        """The job's fanned-out ``kind`` tasks per worker that ran them."""
        return {k: int(v) for k, v in
                self.r.hgetall(f"{self.key(job_id)}:workers:{kind}").items()}


class AsyncJobReader:
    """Reads job records on the event loop (the status-polling hot path)."""

    def __init__(self, client: Any, store: JobStore, presence: Any = None) -> None:
        self.r, self.store = client, store
        self.presence = presence  # core.presence.AsyncPresence: is its queue served?

    async def get(self, job_id: str, tenant: str) -> dict[str, Any] | None:
        raw = await self.r.hgetall(self.store.key(job_id))
        if not raw or raw.get("tenant") != tenant:
            return None
        return self.store._decode(raw)

    async def page(self, tenant: str, *, limit: int, offset: int = 0,
                   where: dict[str, Any] | None = None) -> Page:
        """:meth:`RecordStore.list` without a cursor, on the event loop: the index's
        entries and size in one round trip, the page's records in a second."""
        index = self.store.index_key(tenant, where)
        entries, count = await asyncio.gather(
            self.r.zrevrange(index, offset, offset + limit, withscores=True),
            self.r.zcard(index))
        entries, next_after = cut_page(entries, limit)
        raws = await hgetall_each(self.r, [self.store.key(rid) for rid, _ in entries])
        return Page([self.store._decode(raw) for raw in raws if raw], count, next_after)


class IdempotencyKeys:
    """``Idempotency-Key`` header → the record it created, for ``ttl`` seconds. Keys of
    one ``scope`` (the jobs, the data sets) never meet those of another: each scope has a
    fixed prefix of its own (``SCOPES``) ahead of the tenant, so no tenant name (say
    ``datasets:acme``) can make one scope's key another's."""

    #: the Redis key layout of each scope: <prefix><scope's>{tenant}:{sha256 of the key};
    #: jobs keep the layout they had before data sets took keys too
    SCOPES = {"jobs": "idem:", "datasets": "idem-ds:"}

    def __init__(self, client: redis.Redis, prefix: str, ttl: int, scope: str = "jobs") -> None:
        self.r, self.prefix, self.ttl = client, prefix, ttl
        self.scope = self.SCOPES[scope]
        self._jobs = scope == "jobs"
        self._release = client.register_script(
            "local v = redis.call('GET', KEYS[1]) "
            "if v then local d = cjson.decode(v) "
            "if (d['id'] or d['job_id']) == ARGV[1] then redis.call('DEL', KEYS[1]) end end")

    @staticmethod
    def fingerprint(body: dict[str, Any]) -> str:
        return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()

    def key_of(self, tenant: str, key: str) -> str:
        """The Redis key of a header value (a hash: the value itself is never stored)."""
        return f"{self.prefix}{self.scope}{tenant}:{hashlib.sha256(key.encode()).hexdigest()}"

    @staticmethod
    def _read(raw: str) -> dict[str, str]:
        doc = json.loads(raw)
        # claims written before data sets took keys name their record "job_id"
        return {"fingerprint": doc["fingerprint"], "id": doc.get("id") or doc["job_id"]}

    def peek(self, tenant: str, key: str) -> dict[str, str] | None:
        """The claim on ``key``, if any (nothing is claimed)."""
        raw = self.r.get(self.key_of(tenant, key))
        return None if raw is None else self._read(raw)

    def claim(self, tenant: str, key: str, fingerprint: str, record_id: str) -> dict[str, str]:
        """Claim ``key`` for ``record_id`` (one atomic SET NX: of concurrent claims exactly
        one wins); if already claimed, return the first claim."""
        k = self.key_of(tenant, key)
        mine = {"fingerprint": fingerprint, "id": record_id}
        # gateways of the version before read a job claim's "job_id" (a rolling deploy
        # runs both): a job claim is stored with both names
        stored = {**mine, "job_id": record_id} if self._jobs else mine
        while not self.r.set(k, json.dumps(stored), nx=True, ex=self.ttl):
            first = self.r.get(k)
            if first is not None:  # (None: the claim expired or was released meanwhile)
                return self._read(first)
        return mine

    def release(self, tenant: str, key: str, record_id: str) -> None:
        """Give the key up if ``record_id`` still holds it (its record could not be
        created, or was deleted), so that a retry of the request is not refused."""
        self.release_key(self.key_of(tenant, key), record_id)

    def release_key(self, redis_key: str, record_id: str) -> None:
        """``release`` by the Redis key (``key_of``) a record keeps of its claim."""
        self._release(keys=[redis_key], args=[record_id])


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
