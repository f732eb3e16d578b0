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
from pathlib import PurePosixPath
from typing import Any
from urllib.parse import urlsplit

from core.settings import Settings
from core.webhooks import check_callback_url, send_pinned
from isa.errors import ConfigError

_CHUNK = 1 << 20


def check_import_url(url: str, settings: Settings) -> list[str]:
    """``ConfigError`` (``import_not_allowed``) unless ``url`` may be imported; the
    addresses an http(s) URL resolves to (for ``pinned``), else none."""
    try:
        parts = urlsplit(url)
    except ValueError as exc:  # e.g. an unbalanced "[" ("Invalid IPv6 URL")
        raise ConfigError(f"url {url!r} is not a valid URL ({exc})",
                          code="import_not_allowed", field="url") from None
    path = PurePosixPath(parts.path or "/")
    if ".." in path.parts or "\\" in url or parts.username or parts.password or \
            parts.query or parts.fragment:
        raise ConfigError(f"url {url!r} is refused: no '..', credentials, query or fragment",
                          code="import_not_allowed", field="url")
    if not any(url.startswith(prefix) for prefix in settings.import_allowed_urls):
        raise ConfigError(f"url {url!r} is not under an allowed import location"
                          + ("" if settings.import_allowed_urls else
                             " (imports are off: the server allows none)"),
                          code="import_not_allowed", field="url")
    if parts.scheme in ("http", "https"):
        return check_callback_url(url, settings.outbound_allowed_networks, field="url",
                                  code="import_not_allowed")
    return []


def file_name(url: str) -> str:
    return PurePosixPath(urlsplit(url).path).name or "import"


class ImportTooLarge(Exception):
    pass


def copy_url(url: str, out: Any, settings: Settings, max_bytes: int) -> tuple[int, str]:
    """Stream ``url`` into the binary file ``out``; (size, sha256). ``ImportTooLarge``
    past ``max_bytes``; the URL is checked again first (DNS may have changed)."""
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
                    raise ConfigError(f"GET {url} answered {r.status_code}",
                                      code="import_failed")
                for block in r.iter_bytes(_CHUNK):
                    take(block)
            finally:
                r.close()
    else:
        import fsspec

        options = settings.import_storage_options.get(scheme, {})
        with fsspec.open(url, "rb", **options) as fh:
            while block := fh.read(_CHUNK):
                take(block)
    return size, digest.hexdigest()
