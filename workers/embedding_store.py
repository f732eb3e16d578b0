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

    def get_many(self, encoder: str, keys: Sequence[bytes]) -> dict[bytes, np.ndarray]:
        by_bucket: dict[bytes, list[bytes]] = defaultdict(list)
        for k in dict.fromkeys(keys):
            by_bucket[self._bucket(encoder, k)].append(k)
        pipe = self.r.pipeline(transaction=False)
        for bucket, ks in by_bucket.items():
            pipe.hmget(bucket, [k[BUCKET_BYTES:] for k in ks])
        by_shard: dict[bytes, list[tuple[bytes, int]]] = defaultdict(list)
        for ks, values in zip(by_bucket.values(), pipe.execute(), strict=True):
            for k, v in zip(ks, values, strict=True):
                if v is not None and len(v) == _ENTRY.size:
                    shard, row = _ENTRY.unpack(v)
                    by_shard[shard].append((k, row))
        found: dict[bytes, np.ndarray] = {}
        for shard, wanted in by_shard.items():
            matrix = self._shard(encoder, shard)
            if matrix is None:  # deleted underneath the index: embed those again
                continue
            rows = np.fromiter((row for _, row in wanted), dtype=np.int64, count=len(wanted))
            if rows.max() >= len(matrix):
                continue
            vectors = np.asarray(matrix[rows], dtype=np.float32)
            for (k, _), v in zip(wanted, vectors, strict=True):
                found[k] = v
        return found

    def contains_many(self, encoder: str, keys: Sequence[bytes] | np.ndarray) -> np.ndarray:
        """Per key, whether the index holds it (no vector is read). ``keys``: bytes, or
        the rows of a ``(n, 16)`` uint8 array (no Python object per key held)."""
        found = np.zeros(len(keys), dtype=bool)
        for start in range(0, len(keys), 10_000):  # bounded pipelines
            pipe = self.r.pipeline(transaction=False)
            for k in keys[start:start + 10_000]:
                k = bytes(k)
                pipe.hexists(self._bucket(encoder, k), k[BUCKET_BYTES:])
            found[start:start + 10_000] = pipe.execute()
        return found

    def matrix(self, encoder: str, keys: Sequence[bytes]) -> np.ndarray:
        """The vectors of ``keys`` as one float32 matrix, in order; ``MissingEmbeddings``
        when the cache no longer holds some (evicted since they were embedded)."""
        found = self.get_many(encoder, keys)
        missing = sum(k not in found for k in dict.fromkeys(keys))
        if missing:
            raise MissingEmbeddings(missing)
        return np.stack([found[k] for k in keys])

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
