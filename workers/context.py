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
from core.webhook_events import announce
from core.webhooks import WebhookStore
from isa.embed.base import Encoder
from isa.embed.factory import make_encoder
from workers.cache import ArtifactScoreCache
from workers.embedding_store import ShardedEmbeddingStore


@dataclass
class WorkerContext:
    settings: Settings
    redis: redis.Redis
    #: the embedding index's Redis (bytes, not text)
    cache_redis: redis.Redis
    jobs: JobStore
    datasets: DatasetStore
    metrics: Metrics
    artifacts: ArtifactStore
    _encoders: dict[str, Encoder] = field(default_factory=dict)
    _reference: Encoder | None = None
    _embeddings: dict[str, ShardedEmbeddingStore] = field(default_factory=dict)

    def _cache_prefix(self, tenant: str) -> str:
        # per tenant unless sharing is switched on: a cache hit must not tell one tenant
        # which texts another holds
        shared = self.settings.share_caches_across_tenants
        return self.settings.key_prefix + ("" if shared else f"t:{tenant}:")

    def embeddings(self, tenant: str) -> ShardedEmbeddingStore:
        """The embedding cache a tenant's jobs read and fill (kept per process: it holds
        the shards it has opened)."""
        scope = self._cache_prefix(tenant)
        if scope not in self._embeddings:
            self._embeddings[scope] = ShardedEmbeddingStore(
                self.cache_redis, self.artifacts, scope,
                ttl_s=self.settings.embedding_ttl_days * 86400 or None,
                dtype=self.settings.embedding_shard_dtype)
        return self._embeddings[scope]

    def scores(self, tenant: str) -> ArtifactScoreCache:
        """The score cache a tenant's select jobs read and fill."""
        return ArtifactScoreCache(self.redis, self.artifacts, self._cache_prefix(tenant))

    def webhooks(self) -> WebhookStore:
        return WebhookStore(self.redis, self.settings.key_prefix)

    def encoder(self, spec: EncoderSpec) -> Encoder:
        """The encoder a job asks for, loaded once per worker process."""
        key = spec.model_dump_json()
        if key not in self._encoders:
            # progress every 128 texts: a job's progress (and its cancel check) stays live
            extra = {"chunk_size": 128} if spec.name == "sentence" else {}
            self._encoders[key] = make_encoder(**spec.options(self.settings.encoder_models),
                                               **extra, cache_dir=self.settings.model_cache_dir)
        return self._encoders[key]


    def reference(self) -> Encoder:
        """The reference scorer (``settings.reference_model``), built once per worker
        process; its model loads on the first pairs the embedding store lacks."""
        if self._reference is None:
            from isa.embed.reference import ReferenceScorer

            self._reference = ReferenceScorer(self.settings.reference_model,
                                              cache_dir=self.settings.model_cache_dir)
        return self._reference


@cache
def context() -> WorkerContext:
    s = get_settings()
    text = redis.Redis.from_url(s.redis_url, decode_responses=True)
    binary = redis.Redis.from_url(s.cache_redis_url or s.redis_url)
    artifacts = ArtifactStore(s.artifact_root(), cache_dir=s.data_dir / "cache",
                              storage_options=s.artifact_storage_options)
    return WorkerContext(
        settings=s, redis=text, cache_redis=binary,
        # every status change of either is offered to the webhooks (core.webhook_events)
        jobs=JobStore(text, s.key_prefix, on_moved=announce),
        datasets=DatasetStore(text, s.key_prefix, on_moved=announce),
        metrics=Metrics(text, s.key_prefix),
        artifacts=artifacts)
