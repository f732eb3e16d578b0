"""Which queues a live worker serves, as the workers themselves say it.

Every worker's main process announces its node name under each queue it consumes, every
``heartbeat_interval_s`` (``workers.presence``), and takes it back when it shuts down. A
queue none announced within ``stale_after_s`` has no live worker: its jobs say
``waiting_for_worker`` (with since when) instead of showing a stage that is not moving,
and ``/readyz`` names the queue. Redis: one sorted set per queue, node → last announce.
"""

from __future__ import annotations

import time
from typing import Any

#: seconds a gateway process reuses what it read (the polling path reads it per request)
_READ_EVERY_S = 2.0


def queue_key(prefix: str, queue: str) -> str:
    return f"{prefix}workers:queue:{queue}"


def announce(r: Any, prefix: str, node: str, queues: list[str], ttl_s: float) -> None:
    """The worker ``node`` is alive and consumes ``queues``."""
    pipe = r.pipeline(transaction=False)
    at = time.time()
    for queue in queues:
        pipe.zadd(queue_key(prefix, queue), {node: at})
        pipe.expire(queue_key(prefix, queue), max(1, int(ttl_s * 10)))
    pipe.execute()


def withdraw(r: Any, prefix: str, node: str, queues: list[str]) -> None:
    """The worker ``node`` is shutting down."""
    pipe = r.pipeline(transaction=False)
    for queue in queues:
        pipe.zrem(queue_key(prefix, queue), node)
    pipe.execute()


def last_seen(r: Any, prefix: str, queue: str) -> float | None:
    """When a worker of ``queue`` last announced itself (None: never, or long ago)."""
    return _newest(r.zrevrange(queue_key(prefix, queue), 0, 0, withscores=True))


def live_workers(r: Any, prefix: str, queue: str, within_s: float) -> list[str]:
    """The nodes that announced ``queue`` within ``within_s``."""
    return list(r.zrangebyscore(queue_key(prefix, queue), time.time() - within_s, "+inf"))


def waiting_since(seen: float | None, created_at: float, within_s: float) -> float | None:
    """For a job created at ``created_at`` whose queue's newest worker announced itself at
    ``seen``: None when that worker is live, else since when no worker has served the
    queue (its last sign of life, or the job's creation when there never was one)."""
    if seen is not None and time.time() - seen < within_s:
        return None
    return created_at if seen is None else seen


def job_waiting_since(r: Any, prefix: str, job: dict[str, Any], default_queue: str,
                      within_s: float) -> float | None:
    """``waiting_since`` for an unfinished job record (None for a finished one)."""
    if job["status"] not in ("queued", "running"):
        return None
    seen = last_seen(r, prefix, job.get("queue") or default_queue)
    return waiting_since(seen, job["created_at"], within_s)


def _newest(rows: list[tuple[Any, float]]) -> float | None:
    return float(rows[0][1]) if rows else None


class AsyncPresence:
    """The gateway's view, read at most every two seconds per queue and process."""

    def __init__(self, r: Any, prefix: str, within_s: float) -> None:
        self.r, self.prefix, self.within_s = r, prefix, within_s
        self._seen: dict[str, tuple[float, float | None]] = {}  # queue -> (read at, seen)

    async def waiting_since(self, queue: str, created_at: float) -> float | None:
        """:func:`waiting_since` for ``queue``, its worker's last sign read at most every
        two seconds."""
        read_at, seen = self._seen.get(queue, (0.0, None))
        if time.monotonic() - read_at > _READ_EVERY_S:
            seen = _newest(await self.r.zrevrange(queue_key(self.prefix, queue), 0, 0,
                                                  withscores=True))
            self._seen[queue] = (time.monotonic(), seen)
        return waiting_since(seen, created_at, self.within_s)
