"""Writing files so that a reader never sees half of one."""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO


@contextmanager
def atomic_output(path: Path, *, mode: int = 0o666) -> Iterator[BinaryIO]:
    """A binary file that appears at ``path`` only once fully written (temp + rename).

    The file gets ``mode`` less the process's umask, as ``open()`` would give it (0644
    under the usual umask 022), not ``tempfile.mkstemp``'s 0600: downloads and exports
    are the user's files. Pass ``mode=0o600`` for a private one.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = _create_temp(path, mode)
    try:
        with os.fdopen(fd, "wb") as fh:
            yield fh
        os.replace(tmp_name, path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise


def _create_temp(path: Path, mode: int) -> tuple[int, str]:
    """A new file beside ``path``; the kernel applies the umask (and a default ACL) to
    ``mode`` at creation, so no process-wide umask is read or changed here."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    for _ in range(100):
        name = str(path.parent / f".{path.name}.{secrets.token_hex(6)}.tmp")
        try:
            return os.open(name, flags, mode), name
        except FileExistsError:
            continue
    raise FileExistsError(f"no free temporary name beside {path}")
