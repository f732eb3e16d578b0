"""Workers on several machines share only Redis and the artifact store URL: two worker
processes with different data folders (no shared disk) and the artifact store in a real
local S3-compatible server process run one job together."""

from __future__ import annotations

import json
import subprocess
import time

import httpx
import pytest

from tests.conftest import HH_SAMPLE, read_rows, write_jsonl
from tests.service.harness import RedisServer, _worker_command, running_service

BUCKET = "isa-artifacts"


@pytest.fixture(scope="module")
def two_workers(s3, tmp_path_factory):
    s3.client().create_bucket(Bucket=BUCKET)
    redis_server = RedisServer(tmp_path_factory.mktemp("redis-scale"))
    redis_server.start()
    env = {"ISA_ARTIFACT_URL": f"s3://{BUCKET}/deployment",
           "ISA_ARTIFACT_STORAGE_OPTIONS": json.dumps(s3.storage_options()),
           "ISA_EMBED_CHUNK_SIZE": "48"}
    try:
        with running_service(redis_server.url, tmp_path_factory.mktemp("machine-a"),
                             concurrency=1, extra_env=env) as svc:
            data_b = tmp_path_factory.mktemp("machine-b")
            log = (data_b / "worker.log").open("ab")
            second = subprocess.Popen(_worker_command(1), env={**svc.env,
                                                                "ISA_DATA_DIR": str(data_b)},
                                      stdout=log, stderr=subprocess.STDOUT)
            try:
                _wait_for_workers(svc, 2)
                yield svc, data_b
            finally:
                second.terminate()
                second.wait(timeout=30)
    finally:
        redis_server.stop()


def _wait_for_workers(svc, n: int) -> None:
    deadline = time.monotonic() + 60
    while True:
        ready = httpx.get(f"{svc.base_url}/readyz", timeout=5).json()
        if ready["checks"]["workers"] >= n:
            return
        assert time.monotonic() < deadline, ready
        time.sleep(0.5)


def test_one_job_runs_on_two_machines_through_object_storage(two_workers, tmp_path, s3):
    svc, data_b = two_workers
    c = svc.client()
    path = write_jsonl(tmp_path / "hh.jsonl", read_rows(HH_SAMPLE, 160))
    ds = svc.wait_dataset(c, svc.upload(c, path)["id"])
    assert ds["status"] == "ready", ds
    job = c.post("/v1/jobs", json={"type": "select", "dataset_id": ds["id"], "method": "isa",
                                   "budget": {"count": 16},
                                   "encoder": {"name": "sentence", "max_seq_length": 96}}
                 ).json()
    done = svc.wait_job(c, job["id"], timeout=600)
    assert done["status"] == "succeeded", done
    emb = done["result"]["embedding"]
    # the missing texts fanned out in chunks of 48, and both workers embedded some
    assert emb["newly_embedded"] > 48 * 2
    assert len(emb["workers"]) == 2, emb
    assert sum(emb["workers"].values()) == -(-emb["newly_embedded"] // 48)
    # everything lives in the bucket: upload, embedding shards, the subset
    keys = [o["Key"] for page in s3.client().get_paginator("list_objects_v2").paginate(
        Bucket=BUCKET, Prefix="deployment/") for o in page.get("Contents", [])]
    assert any("/embeddings/" in f"/{k}" for k in keys)
    assert sum(k.endswith(".npy") for k in keys) == sum(emb["workers"].values())
    assert any(job["id"] in k for k in keys)
    # ... and nothing in either machine's own folder but caches of what it read
    for folder in (svc.data_dir, data_b):
        assert not (folder / "artifacts").exists()
    subset = c.get(f"/v1/jobs/{job['id']}/result", params={"format": "jsonl"})
    assert subset.status_code == 200 and len(subset.text.splitlines()) == 16
    # a second job on the same data embeds nothing: the shards are found by any worker
    again = c.post("/v1/jobs", json={"type": "select", "dataset_id": ds["id"],
                                     "method": "isa", "budget": {"count": 8},
                                     "params": {"n_components": 3},
                                     "encoder": {"name": "sentence", "max_seq_length": 96}}
                   ).json()
    second = svc.wait_job(c, again["id"], timeout=300)
    assert second["status"] == "succeeded", second
    assert second["result"]["embedding"]["newly_embedded"] == 0
    assert second["result"]["embedding"]["cached"] == emb["unique"]
