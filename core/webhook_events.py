"""Which status changes are webhook events, and queuing their delivery.

A record's store calls ``announce`` after every status change (``RecordStore.on_moved``);
a change that is an event (``EVENT_OF``) whose tenant or job has somewhere to send it is
queued for ``workers.tasks.webhooks.deliver_webhook`` with the record's public document
as it is now. The snapshot travels in the message: a ``job.started`` delivered after the
job has ended still says ``running``, and every retry sends the same body.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from isa.remote.contract import JOB_END_EVENTS

if TYPE_CHECKING:
    from core.records import RecordStore

logger = logging.getLogger("isa.webhooks")

#: (record kind, the status it moved to) -> the event it is
EVENT_OF: dict[tuple[str, str], str] = {
    ("job", "running"): "job.started",
    **{("job", event.removeprefix("job.")): event for event in JOB_END_EVENTS},
    ("dataset", "ready"): "dataset.ready",
    ("dataset", "invalid"): "dataset.invalid",
}


def record_kind(event: str) -> str:
    """The kind of record an event is about (``job``, ``dataset``)."""
    return event.split(".", 1)[0]


def callback_url(record: dict[str, Any]) -> str | None:
    """A job's own URL for its end (data sets have none)."""
    return (record.get("request") or {}).get("callback_url")


def public_document(kind: str, record: dict[str, Any]) -> dict[str, Any]:
    """What a delivery's ``data`` is: the record as the API answers it (a job without its
    own delivery log, ``webhook``, which the delivery is about to change)."""
    if kind == "job":
        from core.contract import job_public

        return job_public(record).model_dump(mode="json", exclude={"webhook"})
    from isa.remote.contract import DatasetPublic

    return DatasetPublic.model_validate(record).model_dump(mode="json")


def announce(store: RecordStore, record_id: str, status: str) -> None:
    """Queue the delivery of the event ``record_id``'s move to ``status`` is, if it is one
    and someone receives it (``WebhookStore.destination``). Best effort: a status change
    never fails because of its webhook (the broker away: logged)."""
    event = EVENT_OF.get((store.kind, status))
    if event is None:
        return
    from core.celery_app import TASK_DELIVER_WEBHOOK, celery_app
    from core.settings import get_settings
    from core.webhooks import WebhookStore

    try:
        record = store.get(record_id)
        if record is None:  # deleted at once: nothing to tell
            return
        hooks = WebhookStore(store.r, store.prefix)
        if hooks.destination(record["tenant"], event, callback_url(record)) is None:
            return  # most tenants subscribe to nothing: no message for them
        celery_app.send_task(TASK_DELIVER_WEBHOOK,
                             args=(record_id, 1, event, public_document(store.kind, record)),
                             queue=get_settings().webhook_queue)
    except Exception:  # noqa: BLE001
        logger.exception("could not queue the webhook of %s (%s)", record_id, event)
