"""A job store on the real Redis under a key prefix of its own, removed after the test."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
import redis

from core.records import JobStore
from tests.conftest import TEST_REDIS_URL


@pytest.fixture()
def jobs() -> Iterator[JobStore]:
    client = redis.Redis.from_url(TEST_REDIS_URL, decode_responses=True)
    prefix = f"isa-unit-{uuid.uuid4().hex[:8]}:"
    yield JobStore(client, prefix)
    for key in client.scan_iter(f"{prefix}*"):
        client.delete(key)
