"""Deliver a job's end to its webhook: one attempt per task run, the next one sent with a
growing delay; every attempt recorded on the job (``webhook`` field)."""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime
from typing import Any

import httpx
import orjson

from core.celery_app import TASK_DELIVER_WEBHOOK, celery_app
from core.contract import job_public
from core.webhooks import check_callback_url, send_pinned, sign
from isa.errors import ConfigError
from workers.context import WorkerContext, context

logger = logging.getLogger("isa.webhooks")
#: a receiver's answer kept on the job (its first characters)
_ANSWER_CHARS = 200


@celery_app.task(name=TASK_DELIVER_WEBHOOK)
def deliver_webhook(job_id: str, attempt: int = 1) -> str:
    ctx = context()
    job = ctx.jobs.get(job_id)
    if job is None:
        return "missing"
    url = job["request"].get("callback_url") or ctx.webhooks().get(job["tenant"])["url"]
    if not url:
        return "no_url"
    log: dict[str, Any] = job.get("webhook") or {"url": url, "attempts": []}
    if log.get("state") in ("delivered", "failed", "refused"):
        return log["state"]  # a redelivered message: the event has been handled
    entry, state = _attempt(ctx, job, url, attempt)
    log["attempts"].append(entry)
    s = ctx.settings
    if state == "retrying" and attempt >= s.webhook_max_attempts:
        state = "failed"
    log["state"] = state
    if state == "retrying":
        delay = s.webhook_retry_base_s * 4 ** (attempt - 1)
        log["next_attempt_at"] = time.time() + delay
        ctx.jobs.update(job_id, webhook=log)
        celery_app.send_task(TASK_DELIVER_WEBHOOK, args=(job_id, attempt + 1),
                             countdown=delay, queue=s.webhook_queue)
    else:
        log.pop("next_attempt_at", None)
        ctx.jobs.update(job_id, webhook=log)
    return state


def _attempt(ctx: WorkerContext, job: dict[str, Any], url: str,
             attempt: int) -> tuple[dict[str, Any], str]:
    """One POST; (what to record, the state it leaves: delivered, retrying, refused)."""
    entry: dict[str, Any] = {"attempt": attempt, "at": time.time()}
    try:
        # checked again now: the name may resolve elsewhere than when the job was made
        addresses = check_callback_url(url, ctx.settings.outbound_allowed_networks)
    except ConfigError as exc:
        return entry | {"error": exc.message}, "refused"
    public = job_public(job).model_dump(mode="json", exclude={"webhook"})
    body = orjson.dumps({"type": f"job.{job['status']}",
                         "timestamp": datetime.now(UTC).isoformat(), "data": public})
    msg_id = f"msg_{job['id']}_{job['status']}"  # the same on every attempt: receivers dedupe
    ts = int(time.time())
    headers = {"content-type": "application/json", "user-agent": "isa-service-webhooks/1",
               "webhook-id": msg_id, "webhook-timestamp": str(ts),
               # the current secret's signature, and the old one's during a rotation's
               # overlap: Standard Webhooks lists several, space-separated
               "webhook-signature": " ".join(
                   sign(secret, msg_id, ts, body)
                   for secret in ctx.webhooks().signing_secrets(job["tenant"]))}
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
