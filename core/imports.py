"""Data sets imported from a URL (``s3://``, ``gs://``, ``https://`` …) instead of
uploaded: which URLs may be read, and reading one into the artifact store under the same
limits as an upload.

Only URLs under a prefix of ``Settings.import_allowed_urls`` are read (none by default:
imports are off until an operator names buckets or sites). An http(s) URL must also
resolve to public addresses (the webhooks' rule) and is fetched without following
redirects; other schemes go through fsspec with ``Settings.import_storage_options`` (the
S3 endpoint and credentials are the server's, never the caller's).
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import PurePosixPath
from typing import Any
from urllib.parse import urlsplit

from core.settings import Settings
from core.urls import ImportTooLarge, without_query  # noqa: F401 - re-exported
from core.webhooks import check_callback_url, send_pinned
from isa.errors import ConfigError

_CHUNK = 1 << 20


class _NoQueryStrings(logging.Filter):
    """httpx logs every request's URL at INFO: without its query string here, so that a
    presigned URL's signature never reaches a log."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(without_query(str(a)) if type(a).__name__ == "URL" else a
                                for a in record.args)
        return True


logging.getLogger("httpx").addFilter(_NoQueryStrings())


def check_import_url(url: str, settings: Settings) -> list[str]:
    """``ConfigError`` (``import_not_allowed``) unless ``url`` may be imported; the
    addresses an http(s) URL resolves to (for ``pinned``), else none."""
    try:
        parts = urlsplit(url)
    except ValueError as exc:  # e.g. an unbalanced "[" ("Invalid IPv6 URL")
        raise ConfigError(f"url {url!r} is not a valid URL ({exc})",
                          code="import_not_allowed", field="url") from None
    path = PurePosixPath(parts.path or "/")
    # a query string (a presigned URL's signature) only where the operator allows one;
    # it is never repeated in a message
    query_ok = not parts.query or any(url.startswith(p) for p in
                                      settings.import_query_allowed_urls)
    shown = without_query(url)
    if ".." in path.parts or "\\" in url or parts.username or parts.password or \
            not query_ok or parts.fragment:
        raise ConfigError(f"url {shown!r} is refused: no '..', credentials, query (but under "
                          "import_query_allowed_urls) or fragment",
                          code="import_not_allowed", field="url")
    if not any(url.startswith(prefix) for prefix in settings.import_allowed_urls):
        raise ConfigError(f"url {shown!r} is not under an allowed import location"
                          + ("" if settings.import_allowed_urls else
                             " (imports are off: the server allows none)"),
                          code="import_not_allowed", field="url")
    if parts.scheme == "hf":
        from core.hub import hub_repo

        hub_repo(url)  # the Hub's repository id rules
        return []
    if parts.scheme in ("http", "https"):
        # the URL without its query: the same host is resolved and checked, and a refusal
        # (a host that does not resolve, a private address) never repeats a signature
        return check_callback_url(shown, settings.outbound_allowed_networks, field="url",
                                  code="import_not_allowed")
    return []


def query_key(prefix: str, dataset_id: str) -> str:
    """The Redis key holding an import URL's query string until a worker has read it."""
    return f"{prefix}import-query:{dataset_id}"


#: seconds a query string waits for its import (a presigned URL expires sooner anyway)
QUERY_TTL_S = 24 * 3600


def file_name(url: str) -> str:
    return PurePosixPath(urlsplit(url).path).name or "import"


def copy_url(url: str, out: Any, settings: Settings, max_bytes: int,
             hub: dict[str, Any] | None = None) -> tuple[int, str]:
    """Stream ``url`` into the binary file ``out``; (size, sha256). ``ImportTooLarge``
    past ``max_bytes``; the URL is checked again first (DNS may have changed). An
    ``hf://`` URL reads the split ``hub`` names (``core.hub``)."""
    addresses = check_import_url(url, settings)
    digest, size = hashlib.sha256(), 0

    def take(block: bytes) -> None:
        nonlocal size
        size += len(block)
        if size > max_bytes:
            raise ImportTooLarge(max_bytes)
        digest.update(block)
        out.write(block)

    scheme = urlsplit(url).scheme
    if scheme in ("http", "https"):
        import httpx

        with httpx.Client(follow_redirects=False, timeout=60) as client:
            r = send_pinned(client, "GET", url, addresses, stream=True)  # checked ones only
            try:
                if r.status_code != 200:
                    raise ConfigError(f"GET {without_query(url)} answered {r.status_code}",
                                      code="import_failed")
                for block in r.iter_bytes(_CHUNK):
                    take(block)
            finally:
                r.close()
    elif scheme == "hf":
        from core.hub import copy_hub

        copy_hub(url, hub, settings, take, max_bytes)
    else:
        import fsspec

        options = settings.import_storage_options.get(scheme, {})
        with fsspec.open(url, "rb", **options) as fh:
            while block := fh.read(_CHUNK):
                take(block)
    return size, digest.hexdigest()
