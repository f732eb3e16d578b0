"""The one settings object (environment variables prefixed ``ISA_``, or a ``.env`` file)."""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="ISA_", env_file=".env", extra="ignore")

    redis_url: str = "redis://127.0.0.1:6379/0"
    #: the Celery broker; None: ``redis_url`` (the one-machine start). ``amqp://…`` for
    #: RabbitMQ: quorum queues, publisher confirms and real acknowledgements (a dead
    #: worker's messages are redelivered by the broker; nothing reads its internals). Set
    #: the server's consumer_timeout above ISA_TASK_TIME_LIMIT_S (docker-compose.yml does)
    broker_url: str | None = None
    #: connections per gateway process and client (sync, async); requests beyond wait
    redis_pool_size: int = 64
    #: every Redis key starts with this, so several deployments (or test runs) share a server
    key_prefix: str = "isa:"
    data_dir: Path = Path("data")
    #: fsspec URL of the artifact store (``s3://bucket/isa``); default ``<data_dir>/artifacts``.
    #: Workers on several machines share nothing else but Redis: give them all this URL
    artifact_url: str | None = None
    #: fsspec options of that store (``{"endpoint_url": …, "key": …, "secret": …}``;
    #: unset: the library's own credential chain, e.g. AWS_* variables or an instance role)
    artifact_storage_options: dict[str, Any] = Field(default_factory=dict)
    #: API key -> tenant. Also read from ``api_keys_file`` (same JSON shape).
    api_keys: dict[str, str] = Field(default_factory=dict)
    api_keys_file: Path | None = None
    #: the gateway creates a missing ``api_keys_file`` with one random key for tenant
    #: ``default`` on first start and prints the key once (docker-compose.yml's api turns
    #: this on); off, a missing file only gets a warning and gives no keys
    create_api_keys_file: bool = False

    # the gateway's production start (app/serve.py) and its connections (app/protocol.py)
    #: gateway processes; None: one per CPU
    api_workers: int | None = Field(default=None, ge=1, le=256)
    #: an idle kept-alive connection closes after this
    api_keepalive_s: int = Field(default=5, ge=1)
    #: requests in flight per process beyond which new ones get 503 at once
    api_max_connections: int = Field(default=2048, ge=1)
    #: a request's headers must arrive within this (else 408 and the connection closes)
    api_header_timeout_s: float = Field(default=10.0, gt=0)
    #: most seconds between two reads of a request body (an upload that stalls is cut)
    api_body_idle_timeout_s: float = Field(default=30.0, gt=0)
    #: connections per process still waiting for their headers; more are closed at once
    api_max_half_open: int = Field(default=512, ge=1)
    #: answer successful ``GET /v1/jobs/{id}`` polls before FastAPI routes them
    #: (``app/api/polling.py``); off: every poll goes through the route (same answers)
    api_poll_fast_path: bool = True

    max_upload_bytes: int = 1024 * 1024 * 1024
    #: per tenant: unfinished jobs at once, and bytes of uploaded data sets (429 beyond)
    max_active_jobs_per_tenant: int = 50
    max_stored_bytes_per_tenant: int = 20 * 1024 ** 3
    #: any other request body (a job request is a few KB)
    max_body_bytes: int = 1024 * 1024
    max_rows: int = 5_000_000
    #: longest text in any field of a row (a longer one makes the row invalid)
    max_field_chars: int = 1_000_000
    #: a gzip upload may inflate to this many times its size (past 64 MiB)
    max_decompression_ratio: float = 200.0
    #: seconds a data set's validation may read for; past it the data set is invalid
    #: (validation_time_exceeded) and the worker is free again. Reading runs at tens of
    #: MB/s, so the default passes any upload within max_upload_bytes
    max_validation_s: float = Field(default=1800.0, gt=0)
    idempotency_ttl_s: int = 24 * 3600
    #: a job not finished by then is redelivered: keep it above the longest job
    visibility_timeout_s: int = 12 * 3600
    #: distinct texts per embedding task; a large data set becomes several tasks
    embed_chunk_size: int = 2048
    #: units per scoring task: an ISA select job with more units scores as map/reduce
    #: over workers and never gathers its embeddings in one process
    score_shard_units: int = 100_000
    #: the queue select jobs go to ("cpu", or "gpu" where GPU workers run)
    default_queue: str = "cpu"
    #: webhook deliveries: a worker of its own (-Q webhooks --pool threads) delivers
    #: while the others run long jobs; never a queue jobs go to
    webhook_queue: str = "webhooks"
    #: every worker also serves the webhook queue, whatever its -Q (so deliveries never
    #: wait for a worker nobody started); off where a webhooks worker runs (compose),
    #: so that no job worker holds a retry until a slot frees
    worker_serves_webhooks: bool = True
    model_cache_dir: Path | None = None
    #: base models align jobs may name, beyond the built-in smollm2-135m and
    #: tiny-llama-random: {"name": "/local/model/folder"}
    model_registry: dict[str, str] = Field(default_factory=dict)
    #: encoder models jobs may name beyond the packaged ones: {"name": "/local/folder"}
    encoder_models: dict[str, str] = Field(default_factory=dict)
    #: the causal LM whose log-probabilities the DPO-native methods read (implicit_margin,
    #: alignment_potential, margin_bayes): a packaged name, a .gguf file or a folder
    reference_model: str = "SmolLM2-135M-Instruct"
    #: queue of align jobs; None: "gpu" when a worker serves it, else "cpu"
    align_queue: str | None = None
    #: days an embedding stays in the cache (0: forever)
    embedding_ttl_days: int = 30
    #: Redis of the embedding cache's index (vectors live in artifact-store shards).
    #: Unset: the job-state Redis (about 40 bytes per cached text); in production give
    #: it a Redis of its own with an eviction policy, as docker-compose.yml does, so the
    #: cache can never fill the Redis that holds job state
    cache_redis_url: str | None = None
    #: hours between sweeps of embedding shards no index entry names (0: never)
    embedding_sweep_every_h: float = 6.0
    #: how shards store vectors: float32 (exact) or float16 (half the bytes)
    embedding_shard_dtype: Literal["float32", "float16"] = "float32"
    #: share the embedding and score caches between tenants (off: a cache hit would tell
    #: a tenant which texts another one holds)
    share_caches_across_tenants: bool = False
    #: /metrics answers requests carrying this key (``Authorization: Bearer``); unset:
    #: only requests from the loopback interface
    metrics_key: str | None = None

    # supervision: work that stops showing signs of life is sent again, then failed
    #: seconds between a running task's heartbeats
    heartbeat_interval_s: float = 10.0
    #: a running job or validation with no heartbeat for this long has lost its worker
    stale_after_s: float = 60.0
    #: how often the workers' supervisor looks (one worker acts per round)
    supervise_every_s: float = 15.0
    #: deliveries of one job (or validation) before it fails with worker_lost
    max_attempts: int = 3
    #: a job queued (or a data set waiting for validation) this long whose message is in
    #: no broker queue and taken by no worker is sent again: its message was lost
    requeue_lost_after_s: float = 600.0
    #: a task running longer is stopped and its job fails with time_limit_exceeded
    task_time_limit_s: int = 6 * 3600
    #: a worker process whose resident memory passes this after a task is replaced by a
    #: fresh one (a map/reduce job's reading task may grow to ~500 bytes a pair; the
    #: allocator would keep that for ever); 0: never
    worker_max_memory_mb: int = 4096
    #: tasks a worker process runs before it is replaced (0: no limit)
    worker_max_tasks_per_child: int = 0

    # calls the service makes to URLs its users name (webhooks, MLflow servers)
    #: networks (CIDRs) such URLs may resolve to although they are not public, e.g.
    #: ["10.0.0.0/8"] for receivers inside the deployment; empty: public addresses only
    outbound_allowed_networks: list[str] = Field(default_factory=list)
    #: seconds one delivery attempt may take
    webhook_timeout_s: float = 10.0
    #: attempts per event; waits between them grow 4× from ``webhook_retry_base_s``
    #: (5 s, 20 s, 80 s, 320 s, 1280 s: about 28 minutes in all)
    webhook_max_attempts: int = 6
    webhook_retry_base_s: float = 5.0
    #: after a secret rotation, seconds the old secret goes on signing beside the new one
    webhook_secret_overlap_s: float = Field(default=24 * 3600.0, ge=0)

    # data sets imported from a URL (core/imports.py)
    #: URL prefixes imports may read, e.g. ["s3://team-data/", "https://example.org/d/"];
    #: empty: imports are off
    import_allowed_urls: list[str] = Field(default_factory=list)
    #: fsspec options per scheme, e.g. {"s3": {"endpoint_url": "http://minio:9000",
    #: "key": "…", "secret": "…"}} (the server's credentials; callers never send any)
    import_storage_options: dict[str, dict[str, Any]] = Field(default_factory=dict)
    #: of those, the prefixes whose URLs may carry a query string: presigned object-store
    #: URLs (``https://bucket.s3.amazonaws.com/``). The query is kept out of the record
    #: and the logs (a short-lived Redis key the importing worker reads, then deletes)
    import_query_allowed_urls: list[str] = Field(default_factory=list)
    #: the Hugging Face Hub that ``hf://datasets/org/name`` imports read (core/hub.py),
    #: and the server's token for private or gated data sets (a caller never sends one).
    #: HF_HUB_OFFLINE=1 on a worker (compose sets it) turns Hub imports off there
    hub_endpoint: str = "https://huggingface.co"
    hub_token: str | None = None

    # MLflow tracking (workers/tracking.py): set, every finished job logs a run there; a
    # job may name its own server (public addresses only) and experiment
    mlflow_tracking_uri: str | None = None
    #: the experiment a job's run goes to, unless the job names one; ``{tenant}`` becomes
    #: the job's tenant (one experiment per tenant)
    mlflow_experiment: str = "isa-{tenant}"

    @model_validator(mode="after")
    def _webhook_queue_is_its_own(self) -> Settings:
        jobs = {"cpu", "gpu", self.default_queue, self.align_queue}
        if self.webhook_queue in jobs:
            raise ValueError(f"webhook_queue {self.webhook_queue!r} is a queue jobs go to; "
                             "webhook deliveries need one of their own")
        return self

    def tenants_by_key(self) -> dict[str, str]:
        keys = dict(self.api_keys)
        if self.api_keys_file is not None and self.api_keys_file.is_file():
            # re-read only when the file changes: keys can be rotated without a restart
            keys.update(_read_keys_file(self.api_keys_file, self.api_keys_file.stat().st_mtime))
        return keys

    def artifact_root(self) -> str:
        return self.artifact_url or str((self.data_dir / "artifacts").resolve())


@lru_cache(maxsize=4)
def _read_keys_file(path: Path, mtime: float) -> dict[str, str]:
    return json.loads(path.read_text())


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
