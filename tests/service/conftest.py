"""The real service for the end-to-end tests (see harness.py): a Redis database of its
own, a Celery worker process and the gateway process."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.conftest import TEST_REDIS_URL
from tests.service.harness import Service, running_service

MAX_UPLOAD = 3 * 1024 * 1024


@pytest.fixture(scope="session")
def service(tmp_path_factory) -> Iterator[Service]:
    env = {"ISA_MAX_UPLOAD_BYTES": str(MAX_UPLOAD),
           # small chunks: a data set of a few thousand texts fans out to a chord
           "ISA_EMBED_CHUNK_SIZE": "256",
           # webhook receivers run in the test process, on loopback; retries come fast
           "ISA_WEBHOOK_ALLOWED_NETWORKS": '["127.0.0.0/8"]',
           "ISA_WEBHOOK_RETRY_BASE_S": "0.3"}
    with running_service(TEST_REDIS_URL, tmp_path_factory.mktemp("service-data"),
                         extra_env=env) as svc:
        yield svc
