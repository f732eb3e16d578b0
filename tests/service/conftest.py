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
           "ISA_EMBED_CHUNK_SIZE": "256"}
    with running_service(TEST_REDIS_URL, tmp_path_factory.mktemp("service-data"),
                         extra_env=env) as svc:
        yield svc
