"""Celery entry point for workers: ``celery -A workers.worker worker -Q cpu``.

Every worker also consumes the webhook queue (``Settings.webhook_queue``), whatever its
``-Q`` names, so a delivery never waits for a worker that no one started, unless
``ISA_WORKER_SERVES_WEBHOOKS=false``: set where a worker of its own for it (``-Q webhooks
--pool threads``, as in docker-compose.yml) delivers while the others run long jobs."""

from typing import Any

from celery.signals import celeryd_after_setup

from core.celery_app import celery_app
from core.settings import get_settings
from workers import presence, supervisor  # noqa: F401  (started when a worker is ready)
from workers.tasks import (  # noqa: F401  (registers tasks)
    align,
    datasets,
    evaluate,
    scoring,
    select,
    webhooks,
)

__all__ = ["celery_app"]


@celeryd_after_setup.connect
def _consume_webhooks(sender: str, instance: Any, **_: Any) -> None:
    s = get_settings()
    if s.worker_serves_webhooks:
        instance.app.amqp.queues.select_add(s.webhook_queue)
