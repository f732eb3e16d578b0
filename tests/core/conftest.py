"""A key prefix of the test's own on the real Redis (and a job store under one), its keys
removed after the test."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
import redis

from core.records import JobStore
from tests.conftest import TEST_REDIS_URL


@pytest.fixture()
def prefix() -> Iterator[str]:
    p = f"isa-unit-{uuid.uuid4().hex[:8]}:"
    yield p
    client = redis.Redis.from_url(TEST_REDIS_URL)
    for key in client.scan_iter(f"{p}*"):
        client.delete(key)


@pytest.fixture()
def jobs(prefix: str) -> JobStore:
    return JobStore(redis.Redis.from_url(TEST_REDIS_URL, decode_responses=True), prefix)
