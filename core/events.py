"""A job's event log: what happened between its start and its end, oldest first.

Status changes (``JobStore.transition``), a new stage and every tenth of a stage's
progress (written by the progress scripts in ``core.records``, in the same step as the
progress itself), re-sends of lost work (``workers.supervisor``). One Redis stream per
job, beside its record (deleted with it), capped at ``MAX_EVENTS``; an event's id is the
stream's id, so ``after`` pages through it in order, as OpenAI's fine-tuning job events
do. Clients read it with ``GET /v1/jobs/{id}/events``.
"""

from __future__ import annotations

import json
import re
import time
from typing import Any

#: events a job keeps (the oldest go first); a job has a few dozen
MAX_EVENTS = 2000
#: seconds an event log outlives its last event (as the stage history)
EVENTS_TTL_S = 7 * 86400
#: a stream id, as ``after`` takes it (``valid_event_id`` checks its range too)
EVENT_ID = re.compile(r"\d{1,20}-\d{1,20}")
_MAX_PART = 2 ** 64 - 1


def valid_event_id(text: str) -> bool:
    """An id Redis can read after: two 64-bit halves, not the last id there is."""
    if not EVENT_ID.fullmatch(text):
        return False
    ms, seq = (int(x) for x in text.split("-"))
    return ms <= _MAX_PART and seq <= _MAX_PART and (ms, seq) != (_MAX_PART, _MAX_PART)

# The Lua side of ``add``, for the progress scripts: XADD of one event (a local function
# they define before use), with the fields ``add`` writes; and the test for a progress
# milestone (each tenth of a stage's total).
LUA_EVENTS = f"""
local function add_event(key, at, kind, level, message, data)
  redis.call('XADD', key, 'MAXLEN', '~', {MAX_EVENTS}, '*', 'type', kind, 'level', level,
             'message', message, 'data', cjson.encode(data), 'at', at)
  redis.call('EXPIRE', key, {EVENTS_TTL_S})
end
local function milestone(key, at, stage, before, done, total)
  if total > 0 and math.floor(done * 10 / total) > math.floor(before * 10 / total) then
    add_event(key, at, 'progress', 'info', stage .. ' ' .. done .. '/' .. total,
              {{stage = stage, done = done, total = total}})
  end
end
"""


def events_key(job_key: str) -> str:
    return f"{job_key}:events"


def add(r: Any, job_key: str, kind: str, message: str, *, level: str = "info",
        **data: Any) -> None:
    """Append one event to the log of the job stored at ``job_key``."""
    key = events_key(job_key)
    pipe = r.pipeline(transaction=False)
    pipe.xadd(key, {"type": kind, "level": level, "message": message,
                    "data": json.dumps(data), "at": repr(time.time())},
              maxlen=MAX_EVENTS, approximate=True)
    pipe.expire(key, EVENTS_TTL_S)
    pipe.execute()


def read(r: Any, job_key: str, *, after: str | None, limit: int
         ) -> tuple[list[dict[str, Any]], bool]:
    """Up to ``limit`` events after the id ``after`` (from the first when None), oldest
    first, and whether more follow."""
    start = "-" if after is None else f"({after}"
    rows = r.xrange(events_key(job_key), min=start, max="+", count=limit + 1)
    events = []
    for event_id, fields in rows[:limit]:
        events.append({"id": event_id, "created_at": float(fields.get("at", 0)),
                       "type": fields.get("type", ""), "level": fields.get("level", "info"),
                       "message": fields.get("message", ""),
                       "data": json.loads(fields.get("data") or "{}") or {}})
    return events, len(rows) > limit
