"""Per-process resources of a worker: Redis clients, stores, artifact store, encoders
(loaded once per process and kept)."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from typing import Any

import redis

from app.core.artifacts import ArtifactStore
from app.core.records import DatasetStore, JobStore, Metrics
from app.core.settings import Settings, get_settings
from workers.cache import RedisEmbeddingCache, ScoreCache


@dataclass
class WorkerContext:
    settings: Settings
    redis: redis.Redis
    jobs: JobStore
    datasets: DatasetStore
    metrics: Metrics
    artifacts: ArtifactStore
    embeddings: RedisEmbeddingCache
    scores: ScoreCache


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
        scores=ScoreCache(text, artifacts, s.key_prefix),
    )


_ENCODERS: dict[str, Any] = {}


def get_encoder(config: dict[str, Any]) -> Any:
    """The encoder for a job's ``encoder`` block, loaded once per worker process."""
    from workers.engine import CausalLMEncoder, SentenceTransformerEncoder

    key = repr(sorted(config.items()))
    if key not in _ENCODERS:
        kind = config.get("name", "sentence")
        kwargs = {k: v for k, v in config.items() if k not in ("name", "model") and v is not None}
        if kind == "sentence":
            enc = SentenceTransformerEncoder(config.get("model") or "all-MiniLM-L6-v2",
                                             chunk_size=128, **kwargs)
        else:
            enc = CausalLMEncoder(config.get("model") or "SmolLM2-135M-Instruct",
                                  cache_dir=get_settings().model_cache_dir, **kwargs)
        _ENCODERS[key] = enc
    return _ENCODERS[key]
