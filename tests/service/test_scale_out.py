"""Workers on several machines share only Redis and the artifact store URL: two worker
processes with different data folders (no shared disk) and the artifact store in a real
local S3-compatible server process run one job together: its embedding tasks, and its
scoring as map/reduce, which must rank exactly as the single-process ISA does."""

from __future__ import annotations

import json
import subprocess

import pytest

from tests.conftest import HH_SAMPLE, read_rows, write_jsonl
from tests.service.harness import RedisServer, _worker_command, running_service, wait_http

BUCKET = "isa-artifacts"


@pytest.fixture(scope="module")
def two_workers(s3, tmp_path_factory):
    s3.client().create_bucket(Bucket=BUCKET)
    redis_server = RedisServer(tmp_path_factory.mktemp("redis-scale"))
    redis_server.start()
    env = {"ISA_ARTIFACT_URL": f"s3://{BUCKET}/deployment",
           "ISA_ARTIFACT_STORAGE_OPTIONS": json.dumps(s3.storage_options()),
           "ISA_EMBED_CHUNK_SIZE": "48",
           # ISA jobs of more than 40 units score as map/reduce over the workers
           "ISA_SCORE_SHARD_UNITS": "40"}
    try:
        with running_service(redis_server.url, tmp_path_factory.mktemp("machine-a"),
                             concurrency=1, extra_env=env) as svc:
            data_b = tmp_path_factory.mktemp("machine-b")
            log = (data_b / "worker.log").open("ab")
            second = subprocess.Popen(_worker_command(1), env={**svc.env,
                                                                "ISA_DATA_DIR": str(data_b)},
                                      stdout=log, stderr=subprocess.STDOUT)
            try:
                wait_http(f"{svc.base_url}/readyz", [second], lambda: svc.tail("worker"),
                          ok=lambda r: r.json()["checks"]["workers"] >= 2, timeout=60)
                yield svc, data_b
            finally:
                second.terminate()
                second.wait(timeout=30)
    finally:
        redis_server.stop()


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
    # 160 units in blocks of 40: four scoring tasks, and no scoring files left behind
    assert sum(done["result"]["scoring"]["workers"].values()) == 4
    assert not any("/scoring/" in k for k in keys)
    _assert_ranks_like_one_process(svc, c, job["id"], path, done["request"])
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


def _assert_ranks_like_one_process(svc, c, job_id: str, path, request: dict) -> None:
    """The service's map/reduce ranking equals ``ISA().fit`` on the same embeddings, read
    back from the store the workers filled."""
    import io

    import numpy as np
    import pyarrow.parquet as pq
    import redis

    from core.artifacts import ArtifactStore
    from core.contract import EncoderSpec
    from isa import PreferenceFile
    from isa.embed.base import text_key
    from isa.embed.factory import make_encoder
    from isa.pipeline import read_units
    from isa.select.isa import ISA
    from workers.embedding_store import ShardedEmbeddingStore

    units, _ = read_units(PreferenceFile(path))
    name = make_encoder(**EncoderSpec(**request["encoder"]).options()).name
    store = ShardedEmbeddingStore(
        redis.Redis.from_url(svc.env["ISA_REDIS_URL"]),
        ArtifactStore(svc.env["ISA_ARTIFACT_URL"],
                      storage_options=json.loads(svc.env["ISA_ARTIFACT_STORAGE_OPTIONS"])),
        f"{svc.env['ISA_KEY_PREFIX']}t:tenant-a:")
    X = store.matrix(name, [text_key(t) for t in units.texts])
    single = ISA(random_state=request["seed"], **request["params"]).fit(
        X, groups=units.groups, item_labels=np.asarray(units.text_labels))
    scores = pq.read_table(io.BytesIO(c.get(f"/v1/jobs/{job_id}/scores").content)).to_pandas()
    by_rank = scores.sort_values("rank")
    assert by_rank["row_id"].tolist() == [units.row_ids[i] for i in single.ranking_]
    np.testing.assert_allclose(by_rank["score"].to_numpy(),
                               single.scores_[single.ranking_], rtol=1e-6)
