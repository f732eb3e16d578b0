"""Webhooks: when a job ends, the service POSTs its record to the job's ``callback_url``
(or the tenant's registered URL); the tenant's URL also receives the other events it
subscribes to (a job started, a data set's validation ended: ``core.webhook_events``).
Every delivery is signed as the Standard Webhooks specification says
(https://www.standardwebhooks.com): headers ``webhook-id``, ``webhook-timestamp`` and
``webhook-signature`` = ``v1,`` + base64(HMAC-SHA256(secret, "{id}.{timestamp}.{body}"))
with a per-tenant secret ``whsec_<base64>``. Any Standard Webhooks library verifies it.

Callback URLs that resolve to loopback, private, link-local or otherwise non-global
addresses are refused (when the job is created, and again before every delivery, since
DNS may change) unless ``Settings.outbound_allowed_networks`` names their network: a
webhook must not let a caller probe the network behind the service. The request then
goes to the address that was checked (``pinned``), not to a second lookup of the name, so
a name that answers a public address to the check and a private one to the connection
(DNS rebinding) reaches nothing it should not.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
import json
import logging
import secrets
import socket
import time
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit

import redis

from isa.errors import ConfigError
from isa.remote.contract import JOB_END_EVENTS

logger = logging.getLogger("isa.webhooks")
SECRET_PREFIX = "whsec_"


def new_secret() -> str:
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(24)).decode()


def sign(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """The ``webhook-signature`` header value of a message."""
    key = base64.b64decode(secret.removeprefix(SECRET_PREFIX))
    signed = f"{msg_id}.{timestamp}.".encode() + body
    return "v1," + base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()


def check_callback_url(url: str, allowed_networks: Sequence[str] = (), *,
                       field: str = "callback_url",
                       code: str = "invalid_callback_url") -> list[str]:
    """The addresses ``url`` resolves to; ``ConfigError`` (``code``) when it is not
    http(s), carries credentials, does not resolve, or resolves to an address that is not
    global and not inside one of ``allowed_networks`` (CIDRs). Every URL the service
    calls on a user's behalf passes here (webhooks, MLflow servers)."""
    def refuse(why: str) -> ConfigError:
        return ConfigError(f"{field} {url!r} is refused: {why}", code=code, field=field)

    try:
        parts = urlsplit(url)
        hostname = parts.hostname
    except ValueError as exc:  # e.g. an unbalanced "[" ("Invalid IPv6 URL")
        raise refuse(f"it is not a valid URL ({exc})") from None
    if parts.scheme not in ("http", "https") or not hostname:
        raise refuse("only http:// and https:// URLs with a host are accepted")
    if parts.username or parts.password:
        raise refuse("credentials in the URL are not accepted")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
        infos = socket.getaddrinfo(hostname, port, type=socket.SOCK_STREAM)
    except (OSError, ValueError) as exc:
        raise refuse(f"the host does not resolve ({exc})") from None
    allowed = [ipaddress.ip_network(n, strict=False) for n in allowed_networks]
    addresses = list(dict.fromkeys(info[4][0] for info in infos))  # the resolver's order
    for text in addresses:
        addr = ipaddress.ip_address(text.split("%", 1)[0])
        if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped:
            addr = addr.ipv4_mapped
        if not addr.is_global and not any(addr in net for net in allowed
                                           if net.version == addr.version):
            raise refuse(f"it resolves to {addr}, which is not a public address")
    return addresses


def pinned(url: str, addresses: Sequence[str]) -> list[tuple[str, dict[str, str],
                                                             dict[str, Any]]]:
    """``url`` made to connect to each of ``addresses`` (what ``check_callback_url``
    returned, in the resolver's order) instead of resolving its host again: one (url,
    headers, httpx request extensions) per address. The request keeps the name (IDNA) as
    its ``Host`` header and, over https, as the TLS server name, which the certificate is
    verified against. Unchanged when the host is an address already, or when the
    environment sends the request through a proxy (which resolves the name itself)."""
    import urllib.request

    import httpx

    u = httpx.URL(url)
    try:
        ipaddress.ip_address(u.host)
        return [(url, {}, {})]
    except ValueError:
        pass
    if urllib.request.getproxies().get(u.scheme) and not urllib.request.proxy_bypass(u.host):
        return [(url, {}, {})]
    host = {"host": u.netloc.decode("ascii")}
    tls = {"sni_hostname": u.raw_host.decode("ascii")} if u.scheme == "https" else {}
    return [(str(u.copy_with(host=a.split("%", 1)[0])), host, tls) for a in addresses]


def send_pinned(client: Any, method: str, url: str, addresses: Sequence[str], *,
                headers: dict[str, str] | None = None, content: bytes | None = None,
                stream: bool = False) -> Any:
    """Send with ``client`` (an ``httpx.Client``) to the checked ``addresses`` of ``url``
    (``pinned``), trying the next one when an address cannot be connected to (an IPv6
    address on a host without an IPv6 route, say); the response (``stream``: unread)."""
    import httpx

    targets = pinned(url, addresses)
    for k, (target, host, extensions) in enumerate(targets):
        request = client.build_request(method, target, headers={**(headers or {}), **host},
                                       content=content, extensions=extensions)
        try:
            return client.send(request, stream=stream)
        except httpx.ConnectError:
            if k == len(targets) - 1:
                raise
    raise AssertionError("no address to send to")  # check_callback_url never returns none


# KEYS: the tenant's webhook hash. ARGV: the new secret, the old one's end, the overlap.
_ROTATE = """
local old = redis.call('HGET', KEYS[1], 'secret')
redis.call('HSET', KEYS[1], 'secret', ARGV[1])
if tonumber(ARGV[3]) > 0 and old then
  redis.call('HSET', KEYS[1], 'previous_secret', old, 'previous_until', ARGV[2])
else
  redis.call('HDEL', KEYS[1], 'previous_secret', 'previous_until')
end
return 1
"""


class WebhookStore:
    """Each tenant's registered URL and signing secret (created on first need)."""

    def __init__(self, client: redis.Redis, prefix: str) -> None:
        self.r, self.prefix = client, prefix
        self._rotate = client.register_script(_ROTATE)

    def _key(self, tenant: str) -> str:
        return f"{self.prefix}webhook:{tenant}"

    def _doc(self, tenant: str) -> dict[str, str]:
        """The tenant's hash, its secret made if there is none."""
        key = self._key(tenant)
        self.r.hsetnx(key, "secret", new_secret())  # atomic: racing callers share one
        return self.r.hgetall(key)

    @staticmethod
    def _previous(doc: dict[str, str]) -> tuple[str, float] | None:
        """The last rotation's old secret and its end, while it still signs."""
        until = float(doc.get("previous_until") or 0)
        if doc.get("previous_secret") and until > time.time():
            return doc["previous_secret"], until
        return None

    @staticmethod
    def _events(stored: str | None) -> list[str]:
        """The subscribed event types as stored; the job end events for a tenant that
        never chose (every tenant's registration before subscriptions)."""
        return list(JOB_END_EVENTS) if stored is None else json.loads(stored)

    def get(self, tenant: str) -> dict[str, Any]:
        """``{"url", "events", "secret", "previous_secret_valid_until"}`` — the secret made
        if there is none; the last rotation's old secret's end, while it still signs."""
        doc = self._doc(tenant)
        previous = self._previous(doc)
        return {"url": doc.get("url") or None, "events": self._events(doc.get("events")),
                "secret": doc["secret"],
                "previous_secret_valid_until": previous[1] if previous else None}

    def destination(self, tenant: str, event: str, callback_url: str | None = None
                    ) -> str | None:
        """Where ``event`` goes: a job's end to the job's own ``callback_url`` if it has
        one (which overrides the tenant's URL, as it always has); any event to the
        tenant's URL when the tenant subscribes to it; else nowhere (None). Reads without
        making a secret: most tenants register no URL."""
        if callback_url and event in JOB_END_EVENTS:
            return callback_url
        url, events = self.r.hmget(self._key(tenant), "url", "events")
        return url if url and event in self._events(events) else None

    def signing_secrets(self, tenant: str) -> list[str]:
        """The secrets a delivery is signed with: the current one, and the one before it
        during the rotation's overlap (Standard Webhooks sends several signatures, so a
        receiver still on the old secret verifies until it switches)."""
        doc = self._doc(tenant)
        previous = self._previous(doc)
        return [doc["secret"], *([previous[0]] if previous else [])]

    def register(self, tenant: str, url: str | None,
                 events: Sequence[str] | None = None) -> dict[str, Any]:
        """The tenant's registration replaced: its URL (None removes it) and the event
        types it receives (None: the job end events). The secret stays."""
        pipe = self.r.pipeline(transaction=True)
        if url is None:
            pipe.hdel(self._key(tenant), "url")
        else:
            pipe.hset(self._key(tenant), "url", url)
        if events is None:
            pipe.hdel(self._key(tenant), "events")
        else:
            pipe.hset(self._key(tenant), "events", json.dumps(list(events)))
        pipe.execute()
        return self.get(tenant)

    def rotate_secret(self, tenant: str, overlap_s: float = 0.0) -> dict[str, Any]:
        """A new secret; the old one goes on signing for ``overlap_s`` seconds beside it.
        One step (a script): two rotations at once both keep what they answer, the later
        one's old secret being the earlier one's new."""
        self.get(tenant)  # a secret exists to rotate
        self._rotate(keys=[self._key(tenant)],
                     args=[new_secret(), repr(time.time() + overlap_s), overlap_s])
        return self.get(tenant)
