"""/v1/webhook — the tenant's webhook: a URL every job of the tenant reports its end to
(a job's own ``callback_url`` overrides it) and the secret deliveries are signed with."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from app.api.deps import CurrentTenant, SettingsDep, Webhooks
from app.api.errors import ApiError, error_responses
from core.webhooks import check_callback_url
from isa.errors import ConfigError
from isa.remote.contract import WebhookPublic, WebhookUpdate

router = APIRouter(prefix="/v1/webhook", tags=["webhooks"],
                   responses=error_responses(401, 422, 503))


@router.get("", response_model=WebhookPublic)
def get_webhook(tenant: CurrentTenant, hooks: Webhooks) -> WebhookPublic:
    """The registered URL (if any) and the signing secret (made on first request)."""
    return WebhookPublic(**hooks.get(tenant))


@router.put("", response_model=WebhookPublic, responses=error_responses(400, 413),
            operation_id="set_webhook")
def set_webhook(body: WebhookUpdate, tenant: CurrentTenant, hooks: Webhooks,
                settings: SettingsDep) -> WebhookPublic:
    """Register the tenant's URL (``null`` removes it). Same address rule as a job's
    ``callback_url``: public addresses only, unless the server allows more."""
    if body.url is not None:
        try:
            check_callback_url(body.url, settings.outbound_allowed_networks)
        except ConfigError as exc:
            raise ApiError(422, exc.code, exc.message, **exc.details) from exc
    return WebhookPublic(**hooks.set_url(tenant, body.url))


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
