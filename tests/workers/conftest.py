"""A worker context on the real Redis (a key prefix of its own) and a temporary data
folder, for tests that call task bodies in this process."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from core.records import new_id
from tests.conftest import TEST_REDIS_URL


@pytest.fixture()
def worker_ctx(tmp_path, monkeypatch) -> Iterator:
    from core.settings import get_settings
    from workers.context import context

    prefix = f"isa-unit-{uuid.uuid4().hex[:8]}:"
    monkeypatch.setenv("ISA_REDIS_URL", TEST_REDIS_URL)
    monkeypatch.setenv("ISA_KEY_PREFIX", prefix)
    monkeypatch.setenv("ISA_DATA_DIR", str(tmp_path))
    get_settings.cache_clear()
    context.cache_clear()
    yield context()
    get_settings.cache_clear()
    context.cache_clear()
    client = redis.Redis.from_url(TEST_REDIS_URL)
    for key in client.scan_iter(f"{prefix}*"):
        client.delete(key)


def add_dataset(ctx, path: Path, tenant: str = "t1", expect: str = "ready",
                **options) -> str:
    """Store ``path`` as an uploaded data set and validate it, as the gateway and the
    validation task would; the validation must end ``expect``."""
    import hashlib

    from core.artifacts import Keys
    from core.contract import DatasetOptions
    from workers.tasks.datasets import validate_dataset

    dataset_id = new_id("ds")
    artifact = Keys.upload(dataset_id, ".jsonl")
    ctx.artifacts.put_file(path, artifact)
    ctx.datasets.create(tenant, dataset_id, "uploaded", {
        "filename": path.name, "size_bytes": path.stat().st_size,
        "sha256": hashlib.sha256(path.read_bytes()).hexdigest(), "artifact": artifact,
        "options": DatasetOptions(**options).model_dump()})
    assert validate_dataset.run(dataset_id) == expect, ctx.datasets.get(dataset_id)
    return dataset_id


def add_job(ctx, request: dict, tenant: str = "t1") -> str:
    from core.contract import parse_job_request

    job_id = new_id("job")
    body = parse_job_request(request).model_dump()
    ctx.jobs.create(tenant, job_id, "queued", {"type": body["type"], "request": body})
    return job_id



