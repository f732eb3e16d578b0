"""Dependencies: settings, Redis-backed stores, the artifact store, the caller's tenant."""

from __future__ import annotations

import hmac
import json
from functools import cache
from pathlib import Path
from typing import Annotated

import redis
import redis.asyncio as aioredis
from fastapi import Depends, Security
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from app.api.errors import ApiError
from core.artifacts import ArtifactStore
from core.presence import AsyncPresence
from core.records import AsyncJobReader, DatasetStore, IdempotencyKeys, JobStore, Metrics
from core.redis_pipelined import PipelinedRedis, polling_client
from core.settings import Settings, get_settings
from core.webhook_events import announce
from core.webhooks import WebhookStore


# Bounded, blocking pools: under a burst, a request waits for a free connection (up to
# pool_timeout) instead of failing, and the gateway never opens more than the bound.
@cache
def _redis(url: str, size: int) -> redis.Redis:
    return redis.Redis(connection_pool=redis.BlockingConnectionPool.from_url(
        url, max_connections=size, timeout=5, decode_responses=True, socket_timeout=5,
        socket_connect_timeout=2))


@cache
def _async_redis(url: str, size: int) -> PipelinedRedis | aioredis.Redis:
    # the polling path's reads: one pipelined connection per event loop (core/redis_pipelined)
    return polling_client(url, size)


async def settings_dep() -> Settings:
    # async: FastAPI runs plain-def dependencies in its thread pool, a cost per request
    return get_settings()


SettingsDep = Annotated[Settings, Depends(settings_dep)]


async def get_redis(settings: SettingsDep) -> redis.Redis:
    return _redis(settings.redis_url, settings.redis_pool_size)


RedisDep = Annotated[redis.Redis, Depends(get_redis)]


@cache
def _jobs(url: str, size: int, prefix: str) -> JobStore:
    # one per process, like the readers below: building a store registers its Lua
    # scripts (hashing each), a cost the list and every other job route paid per request.
    # A job the gateway ends (a queued job cancelled) announces its webhook like any
    return JobStore(_redis(url, size), prefix, on_moved=announce)


async def get_jobs(s: SettingsDep) -> JobStore:
    return _jobs(s.redis_url, s.redis_pool_size, s.key_prefix)


@cache
def _async_jobs(url: str, size: int, prefix: str, stale_after_s: float) -> AsyncJobReader:
    # one per process: building a JobStore registers its Lua scripts (hashing each)
    client = _async_redis(url, size)
    return AsyncJobReader(client, JobStore(_redis(url, size), prefix),
                          AsyncPresence(client, prefix, stale_after_s))


async def get_async_jobs(s: SettingsDep) -> AsyncJobReader:
    return _async_jobs(s.redis_url, s.redis_pool_size, s.key_prefix, s.stale_after_s)


async def get_webhooks(r: RedisDep, s: SettingsDep) -> WebhookStore:
    return WebhookStore(r, s.key_prefix)


@cache
def _datasets(url: str, size: int, prefix: str) -> DatasetStore:
    # (the gateway changes no data set's status today; if it does, it is announced)
    return DatasetStore(_redis(url, size), prefix, on_moved=announce)


async def get_datasets(s: SettingsDep) -> DatasetStore:
    return _datasets(s.redis_url, s.redis_pool_size, s.key_prefix)


async def get_idempotency(r: RedisDep, s: SettingsDep) -> IdempotencyKeys:
    return IdempotencyKeys(r, s.key_prefix, s.idempotency_ttl_s)


async def get_dataset_idempotency(r: RedisDep, s: SettingsDep) -> IdempotencyKeys:
    # uploads and imports share one scope: both create a data set
    return IdempotencyKeys(r, s.key_prefix, s.idempotency_ttl_s, scope="datasets")


async def get_metrics_store(r: RedisDep, s: SettingsDep) -> Metrics:
    return Metrics(r, s.key_prefix)


@cache
def _artifacts(root: str, options: str, cache_dir: str) -> ArtifactStore:
    return ArtifactStore(root, storage_options=json.loads(options), cache_dir=Path(cache_dir))


async def get_artifacts(s: SettingsDep) -> ArtifactStore:
    return _artifacts(s.artifact_root(), json.dumps(s.artifact_storage_options, sort_keys=True),
                      str(s.data_dir / "cache"))


# Declared as security schemes (not plain headers), so the OpenAPI document says how to
# authenticate and tools (clients, fuzzers) send the key the way it is meant.
_api_key = APIKeyHeader(name="X-API-Key", auto_error=False,
                        description="the tenant's API key")
_bearer = HTTPBearer(auto_error=False, description="the API key as a bearer token")


async def get_tenant(s: SettingsDep,
                     x_api_key: Annotated[str | None, Security(_api_key)] = None,
                     bearer: Annotated[HTTPAuthorizationCredentials | None, Security(_bearer)]
                     = None) -> str:
    """The tenant of the caller's API key (``X-API-Key`` or ``Authorization: Bearer``)."""
    key = x_api_key
    if key is None and bearer is not None:
        key = bearer.credentials.strip()
    if not key:
        raise ApiError(401, "missing_api_key", "send an API key in X-API-Key or "
                       "'Authorization: Bearer <key>'")
    tenant = tenant_of_key(s, key)
    if tenant is None:
        raise ApiError(401, "invalid_api_key", "the API key is not valid")
    return tenant


def tenant_of_key(s: Settings, key: str) -> str | None:
    """The tenant whose API key is ``key`` (compared in constant time), or None. The one
    check both the API (headers) and the dashboard's login use."""
    found = None
    for known, tenant in s.tenants_by_key().items():
        if hmac.compare_digest(known.encode(), key.encode()) and found is None:
            found = tenant
    return found


CurrentTenant = Annotated[str, Depends(get_tenant)]
Jobs = Annotated[JobStore, Depends(get_jobs)]
AsyncJobs = Annotated[AsyncJobReader, Depends(get_async_jobs)]
Datasets = Annotated[DatasetStore, Depends(get_datasets)]
Idempotency = Annotated[IdempotencyKeys, Depends(get_idempotency)]
DatasetIdempotency = Annotated[IdempotencyKeys, Depends(get_dataset_idempotency)]
MetricsStore = Annotated[Metrics, Depends(get_metrics_store)]
Artifacts = Annotated[ArtifactStore, Depends(get_artifacts)]
Webhooks = Annotated[WebhookStore, Depends(get_webhooks)]
