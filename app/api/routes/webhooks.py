"""/v1/webhook — the tenant's webhook: a URL, the events it receives (by default every
job's end; a job's own ``callback_url`` takes that job's end instead) and the secret
deliveries are signed with."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from app.api.deps import CurrentTenant, SettingsDep, Webhooks
from app.api.errors import ApiError, error_responses
from core.webhooks import check_callback_url
from isa.errors import ConfigError
from isa.remote.contract import WEBHOOK_EVENTS, WebhookPublic, WebhookUpdate

router = APIRouter(prefix="/v1/webhook", tags=["webhooks"],
                   responses=error_responses(401, 422, 503))


@router.get("", response_model=WebhookPublic)
def get_webhook(tenant: CurrentTenant, hooks: Webhooks) -> WebhookPublic:
    """The registered URL (if any), the event types it receives and the signing secret
    (made on first request)."""
    return WebhookPublic(**hooks.get(tenant))


@router.put("", response_model=WebhookPublic, responses=error_responses(400, 413),
            operation_id="set_webhook")
def set_webhook(body: WebhookUpdate, tenant: CurrentTenant, hooks: Webhooks,
                settings: SettingsDep) -> WebhookPublic:
    """Replace the tenant's registration: its URL (``null`` removes it) and ``events``,
    the event types the URL receives — ``job.started`` (a job begins running; ``data``:
    the job), ``job.succeeded``, ``job.failed``, ``job.cancelled`` (``data``: the job),
    ``dataset.ready``, ``dataset.invalid`` (a data set's validation ended; ``data``: the
    data set as ``GET /v1/datasets/{id}`` answers it, with its ``error`` when invalid).
    Omitted: the job end events only. Another type is refused (422
    ``unknown_event_type``, naming it). A job's own ``callback_url`` receives that job's
    end (and nothing else) whatever the tenant subscribes to, and the tenant's URL does
    not receive that end (its ``job.started``, if subscribed, still). Same address rule
    as a job's ``callback_url``: public addresses only, unless the server allows more."""
    events = _known_events(body.events)
    if body.url is not None:
        try:
            check_callback_url(body.url, settings.outbound_allowed_networks)
        except ConfigError as exc:
            raise ApiError(422, exc.code, exc.message, **exc.details) from exc
    return WebhookPublic(**hooks.register(tenant, body.url, events))


def _known_events(events: list[str] | None) -> list[str] | None:
    """``events`` without repeats, in their order; 422 ``unknown_event_type`` at the first
    that is not one (a typo must not subscribe to nothing in silence)."""
    if events is None:
        return None
    for i, event in enumerate(events):
        if event not in WEBHOOK_EVENTS:
            shown = event[:100]  # any string reaches here: echo a bounded part
            raise ApiError(422, "unknown_event_type",
                           f"unknown event type {shown!r}; the types are "
                           f"{', '.join(WEBHOOK_EVENTS)}", field=f"body.events[{i}]",
                           event=shown, allowed=list(WEBHOOK_EVENTS))
    return list(dict.fromkeys(events))


@router.post("/rotate-secret", response_model=WebhookPublic, responses=error_responses(400, 413))
def rotate_secret(tenant: CurrentTenant, hooks: Webhooks, settings: SettingsDep,
                  overlap_s: Annotated[float | None, Query(
                      ge=0, le=7 * 86400, description="seconds the old secret goes on "
                      "signing beside the new one (default ISA_WEBHOOK_SECRET_OVERLAP_S, "
                      "24 h; 0: from now on only the new one)")] = None) -> WebhookPublic:
    """A new signing secret. During the overlap every delivery carries two signatures, the
    new secret's and the old one's, so a receiver verifies with either until it switches."""
    overlap = settings.webhook_secret_overlap_s if overlap_s is None else overlap_s
    return WebhookPublic(**hooks.rotate_secret(tenant, overlap))
