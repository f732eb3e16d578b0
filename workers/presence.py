"""A worker says which queues it serves while it lives (``core.presence``): a thread of
its main process announces them every ``heartbeat_interval_s``; shutting down withdraws
them, so the gateway sees a queue without a worker at once, not a period later."""

from __future__ import annotations

import logging
import threading
from typing import Any

from celery.signals import worker_ready, worker_shutdown

from core import presence
from core.celery_app import celery_app
from workers.context import context

log = logging.getLogger("isa.presence")

_STOP = threading.Event()
_ME: dict[str, Any] = {}


def consumed_queues() -> list[str]:
    """The queues this worker consumes (``-Q``, plus the webhook queue it adds)."""
    chosen = celery_app.amqp.queues.consume_from
    if chosen:
        return sorted(chosen)
    return [celery_app.conf.task_default_queue]


def _announce_forever(node: str, queues: list[str]) -> None:
    ctx = context()
    s = ctx.settings
    while True:
        try:
            presence.announce(ctx.redis, s.key_prefix, node, queues, s.stale_after_s)
        except Exception:  # noqa: BLE001 - Redis away: the next round tries again
            log.warning("announcing this worker failed", exc_info=True)
        if _STOP.wait(s.heartbeat_interval_s):
            return


@worker_ready.connect
def _start(sender: Any = None, **_: Any) -> None:
    node = getattr(sender, "hostname", None) or "worker"
    queues = consumed_queues()
    _ME.update(node=node, queues=queues)
    threading.Thread(target=_announce_forever, args=(node, queues), name="presence",
                     daemon=True).start()


@worker_shutdown.connect
def _stop(**_: Any) -> None:
    _STOP.set()
    if _ME:
        try:
            ctx = context()
            presence.withdraw(ctx.redis, ctx.settings.key_prefix, _ME["node"], _ME["queues"])
        except Exception:  # noqa: BLE001 - the announcement goes stale by itself
            log.warning("withdrawing this worker failed", exc_info=True)
