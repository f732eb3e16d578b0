"""Caches shared by every worker through Redis and the artifact store.

- ``RedisEmbeddingCache``: content-addressed embeddings, key (encoder name, text hash) →
  float32 bytes. A second job on the same data set embeds nothing; a data set that
  overlaps an old one embeds only its new texts.
- ``ArtifactScoreCache``: a method's fitted state (``SelectionMethod.state_dict()``) as an
  ``.npz`` artifact, indexed in Redis by the plan's score key.
"""

from __future__ import annotations

import io
from collections.abc import Sequence

import numpy as np
import redis

from core.artifacts import ArtifactStore, Keys
from isa.embed.base import EmbeddingCache
from isa.pipeline import ScoreCache


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


class ArtifactScoreCache(ScoreCache):
    def __init__(self, client: redis.Redis, artifacts: ArtifactStore, prefix: str) -> None:
        self.r, self.artifacts, self.prefix = client, artifacts, prefix

    def _index(self, key: str) -> str:
        return f"{self.prefix}scorecache:{key}"

    def get(self, key: str) -> dict[str, np.ndarray] | None:
        artifact = self.r.get(self._index(key))
        if artifact is None or not self.artifacts.exists(artifact):
            return None
        with self.artifacts.open_read(artifact) as fh, np.load(io.BytesIO(fh.read())) as npz:
            return {k: npz[k] for k in npz.files}

    def put(self, key: str, state: dict[str, np.ndarray]) -> None:
        artifact = Keys.score_state(key)
        buf = io.BytesIO()
        np.savez(buf, **state)
        with self.artifacts.open_write(artifact) as fh:
            fh.write(buf.getvalue())
        self.r.set(self._index(key), artifact)
