"""The score cache shared by every worker through Redis and the artifact store (the
embedding cache is ``workers.embedding_store``).

- ``ArtifactScoreCache``: a method's fitted state (``SelectionMethod.state_dict()``) as an
  ``.npz`` artifact, indexed in Redis by the plan's score key.
"""

from __future__ import annotations

import io

import numpy as np
import redis

from core.artifacts import ArtifactStore, Keys
from isa.pipeline import ScoreCache


class ArtifactScoreCache(ScoreCache):
    def __init__(self, client: redis.Redis, artifacts: ArtifactStore, prefix: str) -> None:
        self.r, self.artifacts, self.prefix = client, artifacts, prefix

    def _index(self, key: str) -> str:
        return f"{self.prefix}scorecache:{key}"

    def locations(self, key: str) -> dict[str, str]:
        """Where an entry lives (its Redis index key, its artifact): what a job records so
        that deleting its data set can delete the scores derived from it."""
        return {"index": self._index(key), "artifact": Keys.score_state(key)}

    def get(self, key: str) -> dict[str, np.ndarray] | None:
        artifact = self.r.get(self._index(key))
        if artifact is None or not self.artifacts.exists(artifact):
            return None
        with self.artifacts.open_read(artifact) as fh, np.load(io.BytesIO(fh.read())) as npz:
            return {k: npz[k] for k in npz.files}

    def put(self, key: str, state: dict[str, np.ndarray]) -> None:
        artifact = Keys.score_state(key)
        with self.artifacts.open_write(artifact) as fh:  # straight to the file: no copy
            np.savez(fh, **state)
        self.r.set(self._index(key), artifact)
