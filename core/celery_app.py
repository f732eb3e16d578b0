"""The Celery application, shared by the gateway (which only *sends* tasks, by name) and
the workers (which import the task modules)."""

from __future__ import annotations

from celery import Celery
from kombu import Queue

from .settings import get_settings

TASK_VALIDATE = "isa.validate_dataset"
TASK_SELECT = "isa.select"
TASK_EMBED_CHUNK = "isa.embed_chunk"
TASK_FINISH_SELECT = "isa.finish_select"
TASK_SCORE_SHARD = "isa.score_shard"  # sharded scoring of large ISA jobs (map)
TASK_FINISH_SCORING = "isa.finish_scoring"  # ... and its reduce
TASK_EVALUATE = "isa.evaluate"  # evaluate and curve jobs
TASK_ALIGN = "isa.align"
TASK_DELIVER_WEBHOOK = "isa.deliver_webhook"

#: the first task of each job type
TASK_FOR_JOB_TYPE = {"select": TASK_SELECT, "evaluate": TASK_EVALUATE, "curve": TASK_EVALUATE,
                     "align": TASK_ALIGN}


def broker_is_redis() -> bool:
    """Whether the broker is Redis (kombu's transport, whose lost messages the supervisor
    looks for) rather than RabbitMQ (whose acknowledgements need no such search)."""
    s = get_settings()
    return (s.broker_url or s.redis_url).startswith(("redis://", "rediss://", "unix://"))


def queue_names() -> tuple[str, ...]:
    """Every queue workers may consume."""
    return ("cpu", "gpu", get_settings().webhook_queue)


def _queues(amqp: bool) -> tuple[Queue, ...]:
    # RabbitMQ: quorum queues (replicated, durable; a message survives a broker restart)
    args = {"x-queue-type": "quorum"} if amqp else None
    return tuple(Queue(name, queue_arguments=args, durable=True) for name in queue_names())


def make_celery() -> Celery:
    s = get_settings()
    amqp = not broker_is_redis()
    app = Celery("isa", broker=s.broker_url or s.redis_url, backend=s.redis_url)
    backend_transport = {"visibility_timeout": s.visibility_timeout_s}
    # RabbitMQ: a publish returns once the broker has the message (a gateway's 201 means
    # the job's message exists); Redis: how long an unacknowledged message stays held
    transport = {"confirm_publish": True} if amqp else backend_transport
    app.conf.update(
        task_acks_late=True,  # a task is acknowledged when done: a killed worker's task
        task_reject_on_worker_lost=True,  # ... is redelivered to another worker
        worker_prefetch_multiplier=1,  # long tasks: don't hoard messages
        # memory a big task freed goes back to the system with its process
        worker_max_memory_per_child=s.worker_max_memory_mb * 1024 or None,  # KiB
        worker_max_tasks_per_child=s.worker_max_tasks_per_child or None,
        broker_transport_options=transport,
        result_backend_transport_options=backend_transport,
        task_default_queue=s.default_queue,
        task_queues=_queues(amqp),
        task_serializer="json",
        accept_content=["json"],
        result_expires=24 * 3600,
        broker_connection_retry_on_startup=True,
        # a lost broker connection lets running tasks finish (Celery's default today, said
        # here since a later Celery flips it): their work lands in the caches, and the
        # redelivered copy finds the job or part done (tested: a RabbitMQ restart mid-job)
        worker_cancel_long_running_tasks_on_connection_loss=False,
        worker_hijack_root_logger=False,
        task_track_started=False,
        # the soft limit raises inside the task (its job fails with a clear code); the
        # hard one, a minute later, ends the process (the supervisor fails the job)
        task_soft_time_limit=s.task_time_limit_s,
        task_time_limit=s.task_time_limit_s + 60,
    )
    return app


celery_app = make_celery()

_gpu_seen: dict[str, float] = {}


def gpu_queue_served(max_age_s: float = 30.0) -> bool:
    """Whether any live worker consumes the ``gpu`` queue (asked at most every 30 s)."""
    import time

    now = time.monotonic()
    if now - _gpu_seen.get("at", -1e9) > max_age_s:
        try:
            queues = celery_app.control.inspect(timeout=1.0).active_queues() or {}
        except Exception:  # noqa: BLE001 - no answer means no GPU worker known
            queues = {}
        _gpu_seen["served"] = float(any(q.get("name") == "gpu" for qs in queues.values()
                                        for q in qs))
        _gpu_seen["at"] = now
    return bool(_gpu_seen["served"])
