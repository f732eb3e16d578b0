"""Per-process resources of a worker: Redis clients, stores, the artifact store, caches,
and encoders (loaded once per process and kept)."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cache

import redis

from core.artifacts import ArtifactStore
from core.contract import EncoderSpec
from core.records import DatasetStore, JobStore, Metrics
from core.settings import Settings, get_settings
from isa.embed.base import Encoder
from isa.embed.factory import make_encoder
from workers.cache import ArtifactScoreCache, RedisEmbeddingCache


@dataclass
class WorkerContext:
    settings: Settings
    redis: redis.Redis
    jobs: JobStore
    datasets: DatasetStore
    metrics: Metrics
    artifacts: ArtifactStore
    embeddings: RedisEmbeddingCache
    scores: ArtifactScoreCache
    _encoders: dict[str, Encoder] = field(default_factory=dict)

    def encoder(self, spec: EncoderSpec) -> Encoder:
        """The encoder a job asks for, loaded once per worker process."""
        key = spec.model_dump_json()
        if key not in self._encoders:
            # progress every 128 texts: a job's progress (and its cancel check) stays live
            extra = {"chunk_size": 128} if spec.name == "sentence" else {}
            self._encoders[key] = make_encoder(**spec.options(), **extra,
                                               cache_dir=self.settings.model_cache_dir)
        return self._encoders[key]


@cache
def context() -> WorkerContext:
    s = get_settings()
    text = redis.Redis.from_url(s.redis_url, decode_responses=True)
    binary = redis.Redis.from_url(s.redis_url)
    artifacts = ArtifactStore(s.artifact_root(), cache_dir=s.data_dir / "cache")
    return WorkerContext(
        settings=s, redis=text, jobs=JobStore(text, s.key_prefix),
        datasets=DatasetStore(text, s.key_prefix), metrics=Metrics(text, s.key_prefix),
        artifacts=artifacts,
        embeddings=RedisEmbeddingCache(binary, s.key_prefix,
                                       ttl_s=s.embedding_ttl_days * 86400 or None),
        scores=ArtifactScoreCache(text, artifacts, s.key_prefix),
    )
