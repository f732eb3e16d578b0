"""Dashboard sessions: the login form takes an API key, checks it as the API does
(``tenant_of_key``) and answers with a session cookie — ``<issued>.<nonce>.<HMAC-SHA256
keyed by the API key>`` (the nonce: two logins in one second are two sessions), HttpOnly,
SameSite=Strict, Secure over https, for ``SESSION_TTL_S``. The
key itself is never stored in the browser; rotating it ends its sessions, and logging out
ends that one on the server too (its token is listed as revoked in Redis until it would
have expired), so a copied cookie does not outlive the logout. Forms are
protected against cross-site requests twice: the cookie is SameSite=Strict, and every POST
must carry an Origin (or Referer) of this host (``SameOrigin``)."""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from typing import Annotated
from urllib.parse import urlsplit

from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.responses import HTMLResponse, RedirectResponse

from app.api.deps import RedisDep, SettingsDep, tenant_of_key
from app.ui.render import LoginRequired, UiError, html_page
from core.settings import Settings

SESSION_COOKIE = "isa_ui_session"
#: a session lasts this long (the cookie too); then the key is asked for again
SESSION_TTL_S = 12 * 3600

router = APIRouter(prefix="/ui", include_in_schema=False)


def _session_mac(key: str, issued: int, nonce: str) -> str:
    return hmac.new(key.encode(), f"isa-ui-session:{issued}:{nonce}".encode(),
                    hashlib.sha256).hexdigest()


def session_token(key: str, issued: int | None = None) -> str:
    """A session for the holder of API key ``key``: it names no key and no tenant."""
    issued = int(time.time()) if issued is None else issued
    nonce = secrets.token_hex(8)
    return f"{issued}.{nonce}.{_session_mac(key, issued, nonce)}"


def tenant_of_session(settings: Settings, token: str) -> str | None:
    """The tenant whose API key signed ``token``, if it is still valid."""
    issued_s, nonce, mac = (token.split(".") + ["", ""])[:3]
    if not issued_s.isdigit() or len(issued_s) > 12 or len(nonce) != 16 or not mac:
        return None
    issued = int(issued_s)
    if not -60 <= time.time() - issued <= SESSION_TTL_S:
        return None
    found = None
    for known, tenant in settings.tenants_by_key().items():
        if hmac.compare_digest(_session_mac(known, issued, nonce).encode(), mac.encode()) \
                and found is None:
            found = tenant
    return found


def _secure(request: Request) -> bool:
    return request.url.scheme == "https"


def clear_session(request: Request, response: Response) -> None:
    response.delete_cookie(SESSION_COOKIE, path="/ui", secure=_secure(request),
                           httponly=True, samesite="strict")


def _revoked_key(settings: Settings, token: str) -> str:
    return f"{settings.key_prefix}ui:revoked:{hashlib.sha256(token.encode()).hexdigest()}"


async def ui_tenant(request: Request, settings: SettingsDep, r: RedisDep) -> str:
    """The tenant of the request's session cookie, else a redirect to the login form."""
    token = request.cookies.get(SESSION_COOKIE)
    tenant = tenant_of_session(settings, token) if token else None
    if tenant is not None and r.exists(_revoked_key(settings, token)):
        tenant = None  # logged out: the cookie may live on in a copy, the session not
    if tenant is None:
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        raise LoginRequired(target if request.method == "GET" else "/ui", clear=bool(token))
    return tenant


UiTenant = Annotated[str, Depends(ui_tenant)]


async def same_origin(request: Request) -> None:
    """Refuse a form POST that a page of another site made the browser send."""
    source = request.headers.get("origin") or request.headers.get("referer")
    host = request.headers.get("host", "")
    try:
        origin = urlsplit(source).netloc.lower() if source and source != "null" else None
    except ValueError:  # not a URL at all ("Invalid IPv6 URL"): no origin we know
        origin = None
    if origin is None or origin != host.lower():
        raise UiError(403, "Forbidden", "this form must be sent from the dashboard's own "
                      "pages; a request from another site is refused")


SameOrigin = Depends(same_origin)


def safe_next(target: str | None) -> str:
    """A redirect target inside the dashboard, never another site."""
    if target and (target == "/ui" or target.startswith("/ui/")) and "\\" not in target \
            and not any(ord(c) < 32 for c in target):
        return target
    return "/ui"


@router.get("/login")
def login_form(next: Annotated[str | None, Query(max_length=2000)] = None) -> HTMLResponse:
    return html_page("login.html", next=safe_next(next), error=None, tenant=None)


@router.post("/login", dependencies=[SameOrigin])
async def login(request: Request, settings: SettingsDep) -> Response:
    form = await request.form()
    key = str(form.get("api_key") or "").strip()
    target = safe_next(str(form.get("next") or ""))
    tenant = tenant_of_key(settings, key) if key else None
    if tenant is None:
        return html_page("login.html", 401, next=target, tenant=None,
                         error="That API key is not valid." if key else "Enter an API key.")
    response = RedirectResponse(target, status_code=303)
    response.set_cookie(SESSION_COOKIE, session_token(key), max_age=SESSION_TTL_S,
                        path="/ui", httponly=True, samesite="strict",
                        secure=_secure(request))
    return response


@router.api_route("/logout", methods=["GET", "POST"])
def logout(request: Request, settings: SettingsDep, r: RedisDep) -> RedirectResponse:
    token = request.cookies.get(SESSION_COOKIE)
    if token and tenant_of_session(settings, token) is not None:
        issued = int(token.partition(".")[0])
        left = issued + SESSION_TTL_S + 60 - int(time.time())  # the validity's own slack
        r.set(_revoked_key(settings, token), "1", ex=max(left, 1))
    response = RedirectResponse("/ui/login", status_code=303)
    clear_session(request, response)
    return response
