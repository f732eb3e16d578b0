"""Deliver a webhook event (``core.webhook_events``): one attempt per task run, the next
one sent with a growing delay. Every attempt is recorded: a job's end on the job (its
``webhook`` field), any other event beside its record (``RecordStore.webhook_log_key``,
removed with the record, kept a week), which tells a redelivered message that its event
has been handled."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx
import orjson

from core.celery_app import TASK_DELIVER_WEBHOOK, celery_app
from core.webhook_events import callback_url, public_document, record_kind
from core.webhooks import check_callback_url, send_pinned, sign
from isa.errors import ConfigError
from isa.remote.contract import JOB_END_EVENTS
from workers.context import WorkerContext, context

logger = logging.getLogger("isa.webhooks")
#: a receiver's answer kept on the job (its first characters)
_ANSWER_CHARS = 200
#: seconds the delivery log of an event other than a job's end is kept
_LOG_TTL_S = 7 * 86400


@dataclass
class _Event:
    """One event about one record, and where its delivery log lives."""

    ctx: WorkerContext
    type: str
    record: dict[str, Any]
    #: the record's public document when the event happened
    data: dict[str, Any]

    @property
    def msg_id(self) -> str:
        # the same on every attempt (receivers dedupe); a job's end keeps the id it had
        # before events had types: msg_<job>_<status>
        return f"msg_{self.record['id']}_{self.type.split('.', 1)[1]}"

    @property
    def _on_the_job(self) -> bool:
        return self.type in JOB_END_EVENTS

    def _log_key(self) -> str:
        store = self.ctx.datasets if record_kind(self.type) == "dataset" else self.ctx.jobs
        return store.webhook_log_key(self.record["id"])

    def log(self) -> dict[str, Any] | None:
        if self._on_the_job:
            return self.record.get("webhook")
        raw = self.ctx.redis.hget(self._log_key(), self.type)
        return None if raw is None else orjson.loads(raw)

    def save(self, log: dict[str, Any]) -> None:
        if self._on_the_job:
            self.ctx.jobs.update(self.record["id"], webhook=log)
            return
        pipe = self.ctx.redis.pipeline(transaction=False)
        pipe.hset(self._log_key(), self.type, orjson.dumps(log))
        pipe.expire(self._log_key(), _LOG_TTL_S)
        pipe.execute()


def _load(ctx: WorkerContext, record_id: str, event: str | None,
          data: dict[str, Any] | None) -> _Event | None:
    """The event, or None when its record is gone (deleted: nobody is told)."""
    kind = record_kind(event) if event else "job"
    record = (ctx.datasets if kind == "dataset" else ctx.jobs).get(record_id)
    if record is None:
        return None
    # a message queued before events had types is a job's end, its record read now
    event = event or f"job.{record['status']}"
    return _Event(ctx, event, record, data or public_document(kind, record))


@celery_app.task(name=TASK_DELIVER_WEBHOOK)
def deliver_webhook(record_id: str, attempt: int = 1, event: str | None = None,
                    data: dict[str, Any] | None = None) -> str:
    """Attempt ``attempt`` at POSTing ``event`` (a ``WEBHOOK_EVENTS`` type) about
    ``record_id`` with ``data``, the record's public document at the event."""
    ctx = context()
    ev = _load(ctx, record_id, event, data)
    if ev is None:
        return "missing"
    # read again at every attempt: the tenant may have changed its URL or subscription
    url = ctx.webhooks().destination(ev.record["tenant"], ev.type, callback_url(ev.record))
    if not url:
        return "no_url"
    log: dict[str, Any] = ev.log() or {"url": url, "attempts": []}
    if log.get("state") in ("delivered", "failed", "refused"):
        return log["state"]  # a redelivered message: the event has been handled
    entry, state = _attempt(ctx, ev, url, attempt)
    log["attempts"].append(entry)
    s = ctx.settings
    if state == "retrying" and attempt >= s.webhook_max_attempts:
        state = "failed"
    log["state"] = state
    if state == "retrying":
        delay = s.webhook_retry_base_s * 4 ** (attempt - 1)
        log["next_attempt_at"] = time.time() + delay
        ev.save(log)
        celery_app.send_task(TASK_DELIVER_WEBHOOK,
                             args=(record_id, attempt + 1, ev.type, ev.data),
                             countdown=delay, queue=s.webhook_queue)
    else:
        log.pop("next_attempt_at", None)
        ev.save(log)
    return state


def _attempt(ctx: WorkerContext, ev: _Event, url: str,
             attempt: int) -> tuple[dict[str, Any], str]:
    """One POST; (what to record, the state it leaves: delivered, retrying, refused)."""
    entry: dict[str, Any] = {"attempt": attempt, "at": time.time()}
    try:
        # checked again now: the name may resolve elsewhere than when the job was made
        addresses = check_callback_url(url, ctx.settings.outbound_allowed_networks)
    except ConfigError as exc:
        return entry | {"error": exc.message}, "refused"
    body = orjson.dumps({"type": ev.type, "timestamp": datetime.now(UTC).isoformat(),
                         "data": ev.data})
    msg_id = ev.msg_id
    ts = int(time.time())
    headers = {"content-type": "application/json", "user-agent": "isa-service-webhooks/1",
               "webhook-id": msg_id, "webhook-timestamp": str(ts),
               # the current secret's signature, and the old one's during a rotation's
               # overlap: Standard Webhooks lists several, space-separated
               "webhook-signature": " ".join(
                   sign(secret, msg_id, ts, body)
                   for secret in ctx.webhooks().signing_secrets(ev.record["tenant"]))}
    t = time.perf_counter()
    try:
        # to the address just checked (no second lookup), and no redirects: a 3xx must not
        # carry the delivery to an address never checked
        with httpx.Client(follow_redirects=False,
                          timeout=ctx.settings.webhook_timeout_s) as client:
            r = send_pinned(client, "POST", url, addresses, headers=headers, content=body)
    except httpx.HTTPError as exc:
        return entry | {"error": f"{type(exc).__name__}: {exc}"[:_ANSWER_CHARS],
                        "ms": round((time.perf_counter() - t) * 1000)}, "retrying"
    entry |= {"status_code": r.status_code, "ms": round((time.perf_counter() - t) * 1000)}
    if r.is_success:
        return entry, "delivered"
    entry["answer"] = r.text[:_ANSWER_CHARS]
    return entry, "retrying"
