"""The artifact store: uploaded files, subsets, scores, reports. A local folder by
default, any fsspec URL (``s3://bucket/isa``) when workers on several machines share it.

``Keys`` owns the key layout and ``ResultFormat`` the files a job serves; keys are built
from ids the service generated, never from user input, and ``_check`` refuses anything
else.
"""

from __future__ import annotations

import contextlib
import re
import shutil
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import fsspec
from fsspec.implementations.local import LocalFileSystem

from isa.files import atomic_output

_KEY = re.compile(r"^[A-Za-z0-9_\-]+(/[A-Za-z0-9_\-.]+)*$")


def _check(key: str) -> str:
    if not _KEY.match(key) or ".." in key.split("/"):
        raise ValueError(f"invalid artifact key {key!r}")
    return key


class ArtifactStore:
    def __init__(self, root: str, *, cache_dir: Path | None = None,
                 storage_options: dict[str, Any] | None = None) -> None:
        self.fs, self.root = fsspec.core.url_to_fs(root, **(storage_options or {}))
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
            # tenants' files: readable by the service's own user only, whatever its umask
            with atomic_output(Path(path), mode=0o600) as fh:
                yield fh
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

    def version(self, key: str) -> tuple[int, str]:
        """(size, a stamp that changes whenever ``key`` is written again): the store's
        ETag where it has one (object stores), else the modification time and inode (a
        local write is a rename, so a rewrite is a new inode)."""
        info = self.fs.info(self._path(key))
        stamp = ":".join(str(info[k]) for k in ("ETag", "etag", "LastModified", "mtime",
                                                "ino", "created") if info.get(k))
        return int(info["size"]), stamp

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


class Keys:
    """The key layout of the artifact store, in one place."""

    @staticmethod
    def dataset(dataset_id: str) -> str:
        """Everything of a data set (deleted with it)."""
        return f"datasets/{dataset_id}"

    @staticmethod
    def upload(dataset_id: str, suffix: str) -> str:
        """The uploaded file; ``suffix`` is one of the known extensions."""
        return f"{Keys.dataset(dataset_id)}/data{suffix}"

    @staticmethod
    def job(job_id: str) -> str:
        """Everything of a job (its results, its work queue)."""
        return f"jobs/{job_id}"

    @staticmethod
    def job_file(job_id: str, filename: str) -> str:
        """A file of a job (its results, its work queue)."""
        return f"{Keys.job(job_id)}/{filename}"

    @staticmethod
    def embed_queue(job_id: str, chunk: int) -> str:
        """One embedding task's share of the texts a select job must embed (JSON Lines)."""
        return Keys.job_file(job_id, f"todo/{int(chunk):06d}.jsonl")

    @staticmethod
    def score_state(key: str) -> str:
        """A fitted method's state, cached (``.npz``)."""
        return f"score-cache/{key}.npz"


@dataclass(frozen=True, slots=True)
class ResultFormat:
    """A file a finished job serves: ``/v1/jobs/{id}/result?format=<name>``."""

    name: str
    filename: str
    media_type: str
    #: select jobs: the export shape the subset is written in
    shape: str | None = None


_NDJSON, _PARQUET = "application/x-ndjson", "application/vnd.apache.parquet"
#: select jobs: the subset in each shape that applies to it, and every row's score
SUBSET_FORMATS = (
    ResultFormat("jsonl", "subset.jsonl", _NDJSON, "input"),
    ResultFormat("parquet", "subset.parquet", _PARQUET, "input"),
    ResultFormat("kto", "kto.jsonl", _NDJSON, "kto"),
    ResultFormat("trl", "trl.jsonl", _NDJSON, "trl"),
    ResultFormat("openai", "openai.jsonl", _NDJSON, "openai"),
)
SCORES = ResultFormat("scores", "scores.parquet", _PARQUET)
#: evaluate and curve jobs
REPORT_FORMATS = (ResultFormat("json", "report.json", "application/json"),
                  ResultFormat("png", "plot.png", "image/png"))
#: align jobs
ALIGN_FORMATS = (ResultFormat("json", "metrics.json", "application/json"),
                 ResultFormat("png", "plot.png", "image/png"),
                 ResultFormat("archive", "model.zip", "application/zip"))
RESULT_FORMATS = {"select": (*SUBSET_FORMATS, SCORES), "evaluate": REPORT_FORMATS,
                  "curve": REPORT_FORMATS, "align": ALIGN_FORMATS}


def result_format(job_type: str, name: str) -> ResultFormat | None:
    return next((f for f in RESULT_FORMATS.get(job_type, ()) if f.name == name), None)
