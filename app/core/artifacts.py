"""The artifact store: uploaded files, subsets, scores. A local folder by default, any
fsspec URL (``s3://bucket/isa``) when workers on several machines share it.

Keys are built by the service from ids it generated, never from user input; ``_check``
refuses anything else.
"""

from __future__ import annotations

import contextlib
import re
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

import fsspec
from fsspec.implementations.local import LocalFileSystem

_KEY = re.compile(r"^[A-Za-z0-9_\-]+(/[A-Za-z0-9_\-.]+)*$")


def _check(key: str) -> str:
    if not _KEY.match(key) or ".." in key.split("/"):
        raise ValueError(f"invalid artifact key {key!r}")
    return key


class ArtifactStore:
    def __init__(self, root: str, *, cache_dir: Path | None = None) -> None:
        self.fs, self.root = fsspec.core.url_to_fs(root)
        self.local = isinstance(self.fs, LocalFileSystem)
        self.cache_dir = cache_dir or Path("/tmp/isa-artifact-cache")
        if self.local:
            Path(self.root).mkdir(parents=True, exist_ok=True)

    def _path(self, key: str) -> str:
        return f"{self.root.rstrip('/')}/{_check(key)}"

    @contextlib.contextmanager
    def open_write(self, key: str) -> Iterator[BinaryIO]:
        """Write ``key`` atomically: readers see the old object or the whole new one."""
        path = self._path(key)
        if self.local:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            tmp = f"{path}.{uuid.uuid4().hex}.tmp"
            try:
                with open(tmp, "wb") as fh:
                    yield fh
                Path(tmp).replace(path)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
        else:  # object stores publish an object only when its upload completes
            with self.fs.open(path, "wb") as fh:
                yield fh

    def put_file(self, local: Path, key: str) -> None:
        with open(local, "rb") as src, self.open_write(key) as dst:
            shutil.copyfileobj(src, dst, 1 << 20)

    def open_read(self, key: str) -> BinaryIO:
        return self.fs.open(self._path(key), "rb")

    def exists(self, key: str) -> bool:
        return bool(self.fs.exists(self._path(key)))

    def size(self, key: str) -> int:
        return int(self.fs.size(self._path(key)))

    def local_path(self, key: str) -> Path:
        """A local file with the object's bytes (downloaded once for remote stores)."""
        if self.local:
            return Path(self._path(key))
        target = self.cache_dir / _check(key)
        if not target.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            tmp = target.with_name(target.name + f".{uuid.uuid4().hex}.tmp")
            self.fs.get(self._path(key), str(tmp))
            tmp.replace(target)
        return target

    def delete_prefix(self, prefix: str) -> None:
        path = self._path(prefix)
        if self.fs.exists(path):
            self.fs.rm(path, recursive=True)
