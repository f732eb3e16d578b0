"""The service's embedding cache: vectors in shard files in the artifact store, a compact
index in Redis.

Each ``put_many`` (one embedding task's texts) writes one shard, a ``.npy`` matrix named by
a hash of its encoder and text keys (so a redelivered task rewrites the same object), in
the artifact store every worker shares (any fsspec URL: no shared local disk). Only then
does it index each text: Redis hash buckets (the first two bytes of the text hash) map
the rest of the hash to (shard, row), 12 bytes of value, so the index stays in Redis's
compact listpack encoding. Vectors never enter Redis.

Losing index entries (eviction, TTL) only means embedding those texts again: point the
index at its own Redis with an eviction policy (``ISA_CACHE_REDIS_URL``) so the cache can
never fill the Redis that holds job state. A shard no index entry names any more is
garbage: ``sweep_shards`` (run by the workers' supervisor) deletes it.
"""

from __future__ import annotations

import hashlib
import io
import logging
import struct
import time
from collections import OrderedDict, defaultdict
from collections.abc import Sequence

import numpy as np
import redis

from core.artifacts import ArtifactStore
from isa.embed.base import EmbeddingCache
from isa.errors import EngineError

log = logging.getLogger("isa.embedding_store")

#: buckets of the index (the first two bytes of a 16-byte text hash)
BUCKET_BYTES = 2
_ENTRY = struct.Struct("<8sI")  # shard digest, row


def _key_array(keys: Sequence[bytes] | np.ndarray) -> np.ndarray:
    """16-byte text keys as the rows of a ``(n, 16)`` uint8 array."""
    if isinstance(keys, np.ndarray):
        return np.ascontiguousarray(keys, dtype=np.uint8).reshape(-1, 16)
    return np.frombuffer(b"".join(keys), dtype=np.uint8).reshape(-1, 16)


def _digest(*parts: bytes, size: int = 8) -> bytes:
    h = hashlib.blake2b(digest_size=size)
    for part in parts:
        h.update(part)
    return h.digest()


class MissingEmbeddings(EngineError):
    """Embeddings a task expected in the cache are gone (evicted or expired)."""

    def __init__(self, count: int) -> None:
        super().__init__(f"{count:,} embeddings left the cache while the job ran (an evicting "
                         "cache Redis too small for the job?); run the job again",
                         code="embeddings_evicted")


class ShardedEmbeddingStore(EmbeddingCache):
    """Embeddings keyed by (encoder name, text key) in artifact-store shards.

    Args:
        index: a Redis client *without* ``decode_responses`` (keys and values are bytes).
        artifacts: where shards are written and read.
        scope: a cache namespace (per tenant unless caches are shared).
        ttl_s: index entries expire this long after their bucket was last written.
        dtype: ``float32`` (exact) or ``float16`` (half the bytes; cosine ≥ 0.9999).
        open_shards: shards kept open (memory-mapped) in this process.
    """

    def __init__(self, index: redis.Redis, artifacts: ArtifactStore, scope: str, *,
                 ttl_s: int | None = None, dtype: str = "float32",
                 open_shards: int = 64) -> None:
        self.r, self.artifacts, self.ttl = index, artifacts, ttl_s
        self.scope = scope
        self.dtype = np.dtype(dtype)
        self._scope_dir = _digest(scope.encode()).hex()
        self._open: OrderedDict[str, np.ndarray] = OrderedDict()
        self._open_max = open_shards

    def _encoder_id(self, encoder: str) -> str:
        return _digest(encoder.encode()).hex()

    def _bucket(self, encoder: str, key: bytes) -> bytes:
        return (f"{self.scope}embidx:{self._encoder_id(encoder)}:".encode()
                + key[:BUCKET_BYTES].hex().encode())

    def shard_key(self, encoder: str, digest: bytes) -> str:
        """The artifact key of a shard."""
        return f"embeddings/{self._scope_dir}/{self._encoder_id(encoder)}/{digest.hex()}.npy"

    def _locate(self, encoder: str, keys: Sequence[bytes] | np.ndarray
                ) -> tuple[np.ndarray, np.ndarray, list[bytes]]:
        """Where each key's vector is: ``(shard, row, digests)``, per key the number of its
        shard in ``digests`` (-1: not indexed) and its row there. One HMGET per bucket,
        keys grouped by bucket by sorting; no Python object per key is kept."""
        arr = _key_array(keys)
        shard = np.full(len(arr), -1, dtype=np.int64)
        row = np.zeros(len(arr), dtype=np.int64)
        digests: dict[bytes, int] = {}
        if not len(arr):
            return shard, row, []
        bucket = arr[:, 0].astype(np.int64) << 8 | arr[:, 1]
        order = np.argsort(bucket, kind="stable")
        edges = np.flatnonzero(np.diff(bucket[order])) + 1
        groups = np.split(order, edges)
        prefix = f"{self.scope}embidx:{self._encoder_id(encoder)}:".encode()
        for start in range(0, len(groups), 2000):  # bounded pipelines
            batch = groups[start:start + 2000]
            pipe = self.r.pipeline(transaction=False)
            for idx in batch:
                pipe.hmget(prefix + arr[idx[0], :BUCKET_BYTES].tobytes().hex().encode(),
                           [arr[i, BUCKET_BYTES:].tobytes() for i in idx])
            for idx, values in zip(batch, pipe.execute(), strict=True):
                for i, v in zip(idx, values, strict=True):
                    if v is not None and len(v) == _ENTRY.size:
                        digest, row[i] = _ENTRY.unpack(v)
                        shard[i] = digests.setdefault(digest, len(digests))
        return shard, row, list(digests)

    def gather(self, encoder: str, keys: Sequence[bytes] | np.ndarray
               ) -> tuple[np.ndarray | None, np.ndarray]:
        """The vectors of ``keys`` as one float32 matrix, in order (rows of keys not found:
        zeros; ``None`` when none is found), and per key whether it was found."""
        return self._gather(encoder, *self._locate(encoder, keys))

    def _gather(self, encoder: str, shard: np.ndarray, row: np.ndarray,
                digests: list[bytes]) -> tuple[np.ndarray | None, np.ndarray]:
        """The located vectors as one float32 matrix (rows of keys not found: zeros) and
        which keys were found (a shard deleted underneath the index, or shorter than
        the index says, is a miss)."""
        found = shard >= 0
        out: np.ndarray | None = None
        for s, digest in enumerate(digests):
            pos = np.flatnonzero(shard == s)
            matrix = self._shard(encoder, digest)
            if matrix is None or row[pos].max() >= len(matrix):
                found[pos] = False  # deleted underneath the index: embed those again
                continue
            if out is None:
                out = np.zeros((len(shard), matrix.shape[1]), dtype=np.float32)
            out[pos] = matrix[row[pos]]
        return out, found

    def get_many(self, encoder: str, keys: Sequence[bytes]) -> dict[bytes, np.ndarray]:
        keys = list(dict.fromkeys(keys))
        out, found = self.gather(encoder, keys)
        if out is None:
            return {}
        return {k: out[i] for i, k in enumerate(keys) if found[i]}

    def contains_many(self, encoder: str, keys: Sequence[bytes] | np.ndarray) -> np.ndarray:
        """Per key, whether the index holds it (no vector is read). ``keys``: bytes, or
        the rows of a ``(n, 16)`` uint8 array."""
        return self._locate(encoder, keys)[0] >= 0

    def matrix(self, encoder: str, keys: Sequence[bytes] | np.ndarray) -> np.ndarray:
        """The vectors of ``keys`` (bytes, or rows of a ``(n, 16)`` uint8 array) as one
        float32 matrix, in order, filled shard by shard; ``MissingEmbeddings`` when the
        cache no longer holds some (evicted since they were embedded)."""
        out, found = self.gather(encoder, keys)
        if not found.all():
            raise MissingEmbeddings(len({bytes(k) for k in _key_array(keys)[~found]}))
        return out if out is not None else np.zeros((0, 0), dtype=np.float32)

    def put_many(self, encoder: str, items: dict[bytes, np.ndarray]) -> None:
        if not items:
            return
        keys = list(items)
        matrix = np.stack([np.asarray(items[k], dtype=np.float32) for k in keys])
        digest = _digest(encoder.encode(), b"".join(keys), self.dtype.str.encode())
        buf = io.BytesIO()
        np.save(buf, matrix.astype(self.dtype), allow_pickle=False)
        # the shard first: an index entry never points at a shard not yet written
        with self.artifacts.open_write(self.shard_key(encoder, digest)) as fh:
            fh.write(buf.getvalue())
        by_bucket: dict[bytes, dict[bytes, bytes]] = defaultdict(dict)
        for row, k in enumerate(keys):
            by_bucket[self._bucket(encoder, k)][k[BUCKET_BYTES:]] = _ENTRY.pack(digest, row)
        pipe = self.r.pipeline(transaction=False)
        for n, (bucket, mapping) in enumerate(by_bucket.items(), 1):
            pipe.hset(bucket, mapping=mapping)
            if self.ttl:
                pipe.expire(bucket, self.ttl)
            if n % 1000 == 0:
                pipe.execute()
        pipe.execute()

    def _shard(self, encoder: str, digest: bytes) -> np.ndarray | None:
        key = self.shard_key(encoder, digest)
        if key in self._open:
            self._open.move_to_end(key)
            return self._open[key]
        try:
            # local stores: the file itself; object stores: downloaded once per worker
            matrix = np.load(self.artifacts.local_path(key), mmap_mode="r",
                             allow_pickle=False)
        except FileNotFoundError:
            return None
        self._open[key] = matrix
        if len(self._open) > self._open_max:
            self._open.popitem(last=False)
        return matrix


def sweep_shards(index: redis.Redis, artifacts: ArtifactStore, key_prefix: str, *,
                 grace_s: float = 3600.0) -> dict[str, int]:
    """Delete the shards no index entry names (their entries expired or were evicted),
    across every scope and encoder under ``key_prefix``.

    A shard is written before its index entries, so only shards older than ``grace_s``
    go: one being written now is never taken for garbage. Reads every index value once
    (12 bytes an entry): run it rarely. Returns what it saw and deleted."""
    named: set[bytes] = set()
    buckets = index.scan_iter(match=f"{key_prefix}*embidx:*".encode(), count=1000)
    while batch := [b for _, b in zip(range(1000), buckets, strict=False)]:
        pipe = index.pipeline(transaction=False)
        for bucket in batch:
            pipe.hvals(bucket)
        for values in pipe.execute():
            named.update(v[:8] for v in values if len(v) == _ENTRY.size)
    root = artifacts._path("embeddings")
    files = artifacts.fs.find(root, detail=True) if artifacts.fs.exists(root) else {}
    cutoff, seen, deleted, freed = time.time() - grace_s, 0, 0, 0
    for path, info in files.items():
        name = path.rsplit("/", 1)[-1]
        if not name.endswith(".npy"):
            continue
        seen += 1
        try:
            digest = bytes.fromhex(name[:-4])
        except ValueError:
            continue
        if digest in named or _modified(info) > cutoff:
            continue
        try:
            artifacts.fs.rm(path)
        except FileNotFoundError:  # another sweeper was first
            continue
        deleted += 1
        freed += int(info.get("size") or 0)
    if deleted:
        log.info("swept %d embedding shards no index entry names (%d bytes)", deleted, freed)
    return {"shards": seen, "deleted": deleted, "bytes_freed": freed}


def _modified(info: dict) -> float:
    """A listing entry's modification time (local files: mtime; object stores:
    LastModified), as a Unix time; unknown: now (kept)."""
    when = info.get("mtime", info.get("LastModified", info.get("last_modified")))
    if when is None:
        return time.time()
    return float(when.timestamp() if hasattr(when, "timestamp") else when)
