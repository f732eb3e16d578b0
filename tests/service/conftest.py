"""The real service for the end-to-end tests (see harness.py): a Redis database of its
own, a Celery worker process and the gateway process — and, beside it, a local
S3-compatible server process (moto) that data set imports read from."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from isa.align import ModelRegistry
from tests.conftest import TEST_REDIS_URL
from tests.service.harness import S3Server, Service, running_service

MAX_UPLOAD = 3 * 1024 * 1024
IMPORT_BUCKET = "isa-imports"


@pytest.fixture(scope="session")
def s3(tmp_path_factory) -> Iterator[S3Server]:
    server = S3Server(tmp_path_factory.mktemp("s3"))
    server.start()
    server.client().create_bucket(Bucket=IMPORT_BUCKET)
    yield server
    server.stop()


@pytest.fixture(scope="session")
def service(tmp_path_factory, s3) -> Iterator[Service]:
    env = {"ISA_MAX_UPLOAD_BYTES": str(MAX_UPLOAD),
           # small chunks: a data set of a few thousand texts fans out to a chord
           "ISA_EMBED_CHUNK_SIZE": "256",
           # webhook receivers run in the test process, on loopback; retries come fast
           "ISA_OUTBOUND_ALLOWED_NETWORKS": '["127.0.0.0/8"]',
           "ISA_WEBHOOK_RETRY_BASE_S": "0.3",
           # imports: one folder of the local S3 bucket, and loopback web servers
           "ISA_IMPORT_ALLOWED_URLS": json.dumps([f"s3://{IMPORT_BUCKET}/allowed/",
                                                  "http://127.0.0.1:"]),
           "ISA_IMPORT_STORAGE_OPTIONS": json.dumps({"s3": s3.storage_options()}),
           # presigned URLs: a query string only on the loopback web servers
           "ISA_IMPORT_QUERY_ALLOWED_URLS": json.dumps(["http://127.0.0.1:"]),
           # the DPO-native methods' reference model: the tiny random one (plumbing)
           "ISA_REFERENCE_MODEL": str(ModelRegistry().resolve("tiny-llama-random"))}
    with running_service(TEST_REDIS_URL, tmp_path_factory.mktemp("service-data"),
                         extra_env=env) as svc:
        yield svc
