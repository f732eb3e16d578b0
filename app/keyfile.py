"""First start: with ``ISA_CREATE_API_KEYS_FILE=true`` (docker-compose.yml's api), an API
key file that does not exist yet is created with one random key, so that a fresh
deployment (``docker compose up``) answers its first caller instead of 401 to everyone.
The key is printed once, as Jupyter prints its token, with the file that keeps it."""

from __future__ import annotations

import json
import os
import secrets
import sys
import tempfile
from pathlib import Path

DEFAULT_TENANT = "default"


def ensure_keys_file(path: Path, tenant: str = DEFAULT_TENANT) -> str | None:
    """Create ``path`` holding ``{key: tenant}`` for a new random key, unless it exists.

    Returns the key when this call created the file, else ``None``. Never overwrites: the
    complete file (mode 0600) is written under a temporary name and hard-linked into
    place, which fails when the name exists, so of several gateway processes starting
    at once exactly one creates it, and none can read a half-written file.
    """
    if path.exists():
        return None
    path.parent.mkdir(parents=True, exist_ok=True)
    key = f"isa-{secrets.token_urlsafe(32)}"
    body = (json.dumps({key: tenant}, indent=2) + "\n").encode()
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:  # mkstemp: mode 0600, only this user reads it
            fh.write(body)
            fh.flush()
            os.fsync(fh.fileno())
        try:
            os.link(tmp, path)
        except FileExistsError:
            return None
        except OSError:  # a file system without hard links: exclusive create instead
            return key if _create_exclusive(path, body) else None
    finally:
        os.unlink(tmp)
    return key


def _create_exclusive(path: Path, body: bytes) -> bool:
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return False
    with os.fdopen(fd, "wb") as fh:
        fh.write(body)
    return True


def announce(key: str, path: Path, tenant: str = DEFAULT_TENANT) -> None:
    """The one time the key is shown (stderr: the container's log)."""
    print(f"\n    ISA API key for tenant {tenant!r} (created in {path}, shown once):\n"
          f"        X-API-Key: {key}\n"
          f"    It is kept in {path} (mode 0600): read it there later, edit that file to "
          "add or rotate keys.\n", file=sys.stderr, flush=True)
