"""Caches shared by every worker through Redis.

- ``RedisEmbeddingCache``: content-addressed embeddings, key (encoder name, text hash) →
  float32 bytes. A second job on the same data set embeds nothing; a data set that
  overlaps an old one embeds only its new texts.
- ``ScoreCache``: a method's fitted scores for (data set hash, options, method, params,
  encoder, template, level), kept as an ``.npz`` artifact, indexed in Redis.
"""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Sequence
from typing import Any

import numpy as np
import redis

from app.core.artifacts import ArtifactStore
from workers.engine.embed.base import EmbeddingCache


class RedisEmbeddingCache(EmbeddingCache):
    def __init__(self, client: redis.Redis, prefix: str, *, ttl_s: int | None = None,
                 batch: int = 1000) -> None:
        self.r, self.prefix, self.ttl, self.batch = client, prefix, ttl_s, batch

    def _key(self, encoder: str, key: bytes) -> str:
        return f"{self.prefix}emb:{encoder}:{key.hex()}"

    def get_many(self, encoder: str, keys: Sequence[bytes]) -> dict[bytes, np.ndarray]:
        found: dict[bytes, np.ndarray] = {}
        for start in range(0, len(keys), self.batch):
            part = keys[start:start + self.batch]
            for k, blob in zip(part, self.r.mget([self._key(encoder, k) for k in part]),
                               strict=True):
                if blob is not None:
                    found[k] = np.frombuffer(blob, dtype=np.float32)
        return found

    def put_many(self, encoder: str, items: dict[bytes, np.ndarray]) -> None:
        pipe = self.r.pipeline(transaction=False)
        for n, (k, v) in enumerate(items.items(), 1):
            pipe.set(self._key(encoder, k), np.asarray(v, dtype=np.float32).tobytes(),
                     ex=self.ttl)
            if n % self.batch == 0:
                pipe.execute()
        pipe.execute()


class ScoreCache:
    def __init__(self, client: redis.Redis, artifacts: ArtifactStore, prefix: str) -> None:
        self.r, self.artifacts, self.prefix = client, artifacts, prefix

    @staticmethod
    def key(parts: dict[str, Any]) -> str:
        return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()
                              ).hexdigest()[:32]

    def has(self, key: str) -> bool:
        artifact = self.r.get(f"{self.prefix}scorecache:{key}")
        return artifact is not None and self.artifacts.exists(artifact)

    def get(self, key: str) -> dict[str, np.ndarray] | None:
        artifact = self.r.get(f"{self.prefix}scorecache:{key}")
        if artifact is None or not self.artifacts.exists(artifact):
            return None
        with self.artifacts.open_read(artifact) as fh, np.load(io.BytesIO(fh.read())) as npz:
            return {k: npz[k] for k in npz.files}

    def put(self, key: str, arrays: dict[str, np.ndarray]) -> None:
        artifact = f"score-cache/{key}.npz"
        buf = io.BytesIO()
        np.savez(buf, **arrays)
        with self.artifacts.open_write(artifact) as fh:
            fh.write(buf.getvalue())
        self.r.set(f"{self.prefix}scorecache:{key}", artifact)
