"""The select task's body, run in this process on the real Redis: one read of the units,
one embedding lookup, one pass to write every result file; a second budget does neither
lookup nor scoring."""

from __future__ import annotations

import numpy as np
import pyarrow.parquet as pq
import pytest

from core.artifacts import SCORES, Keys
from isa.ingest.dataset import PreferenceFile
from tests.conftest import write_jsonl
from tests.workers.conftest import add_dataset, add_job
from workers.embedding_store import ShardedEmbeddingStore


@pytest.fixture()
def counted(monkeypatch):
    """Counts passes over data files and the keys asked of the embedding cache."""
    calls: dict[str, list] = {"passes": [], "lookups": []}
    iter_examples = PreferenceFile.iter_examples
    get_many = ShardedEmbeddingStore.get_many

    def counting_iter(self):  # noqa: ANN202
        calls["passes"].append(self.path.name)
        return iter_examples(self)

    def counting_get(self, encoder, keys):  # noqa: ANN202
        calls["lookups"].append(list(keys))
        return get_many(self, encoder, keys)

    monkeypatch.setattr(PreferenceFile, "iter_examples", counting_iter)
    monkeypatch.setattr(ShardedEmbeddingStore, "get_many", counting_get)
    return calls


def test_small_select_reads_once_and_looks_up_each_embedding_once(worker_ctx, counted,
                                                                   tmp_path, hh_rows):
    from workers.tasks.select import select_job

    dataset_id = add_dataset(worker_ctx, write_jsonl(tmp_path / "hh.jsonl", hh_rows[:40]))
    body = {"type": "select", "dataset_id": dataset_id, "method": "isa",
            "budget": {"count": 6}, "encoder": {"name": "sentence", "max_seq_length": 128}}
    counted["passes"].clear()
    job_id = add_job(worker_ctx, body)
    select_job.run(job_id)
    job = worker_ctx.jobs.get(job_id)
    assert job["status"] == "succeeded", job
    # one pass to read the units, one to write all five subset files (was: the units
    # twice, then one pass per file)
    assert len(counted["passes"]) == 2
    assert set(job["result"]["files"]) == {"jsonl", "parquet", "kto", "trl", "openai",
                                           "scores"}
    # the cache is asked once, for each distinct text once
    assert len(counted["lookups"]) == 1
    keys = counted["lookups"][0]
    assert len(keys) == len(set(keys)) == job["texts_unique"] == 80
    emb = job["result"]["embedding"]
    # embedded in this task: no fanned-out embedding tasks, so no workers counted
    # the cache name: the precision part is the hardware's (auto)
    name = emb.pop("encoder")
    assert name.startswith("st:all-MiniLM-L6-v2:") and name.endswith(":len128:left"), name
    assert emb == {"texts": 80, "unique": 80, "cached": 0, "newly_embedded": 80, "workers": {}}

    # another budget: the scores come from the score cache, no embedding is looked up
    counted["lookups"].clear()
    job2 = add_job(worker_ctx, {**body, "budget": {"count": 12}})
    select_job.run(job2)
    doc = worker_ctx.jobs.get(job2)
    assert doc["status"] == "succeeded" and doc["result"]["score_cache_hit"] is True
    assert counted["lookups"] == []
    a, b = (pq.read_table(worker_ctx.artifacts.local_path(Keys.job_file(j, SCORES.filename))
                          ).to_pydict() for j in (job_id, job2))
    assert a["row_id"] == b["row_id"] and np.allclose(a["score"], b["score"])
    assert sum(b["selected"]) == 12 and sum(a["selected"]) == 6


def test_a_job_on_another_tenants_data_set_fails_clearly(worker_ctx, tmp_path, hh_rows):
    from workers.tasks.select import select_job

    dataset_id = add_dataset(worker_ctx, write_jsonl(tmp_path / "hh.jsonl", hh_rows[:10]),
                             tenant="owner")
    job_id = add_job(worker_ctx, {"type": "select", "dataset_id": dataset_id,
                                  "method": "random", "budget": {"count": 2}},
                     tenant="intruder")
    select_job.run(job_id)
    job = worker_ctx.jobs.get(job_id)
    assert job["status"] == "failed" and job["error"]["code"] == "dataset_not_found"


def test_a_job_whose_data_set_turned_invalid_says_so(worker_ctx, tmp_path, hh_rows):
    from workers.tasks.select import select_job

    body = {"type": "select", "method": "random", "budget": {"count": 2}}
    # accepted while it was validating, then it turned invalid (as its validation can)
    invalid = add_dataset(worker_ctx, write_jsonl(tmp_path / "i.jsonl", hh_rows[:5]))
    worker_ctx.datasets.update(invalid, status="invalid",
                               error={"code": "missing_field", "message": "line 3: chosen"})
    job_id = add_job(worker_ctx, {**body, "dataset_id": invalid})
    select_job.run(job_id)
    error = worker_ctx.jobs.get(job_id)["error"]
    assert error["code"] == "dataset_invalid" and "failed validation" in error["message"]
    assert error["details"]["error"]["code"] == "missing_field"


@pytest.mark.parametrize("stage", ["reading", "embedding", "scoring", "writing"])
def test_a_cancel_in_any_stage_ends_the_job_cancelled_with_no_files(worker_ctx, tmp_path,
                                                                    hh_rows, monkeypatch,
                                                                    stage):
    from workers.lifecycle import JobRun
    from workers.tasks.select import select_job

    dataset_id = add_dataset(worker_ctx, write_jsonl(tmp_path / "hh.jsonl", hh_rows[:40]))
    job_id = add_job(worker_ctx, {"type": "select", "dataset_id": dataset_id,
                                  "method": "isa", "budget": {"count": 4},
                                  "encoder": {"name": "sentence", "max_seq_length": 64}})
    report, stage_of = JobRun.progress, JobRun.stage

    def cancel_at(target):  # noqa: ANN202 - the client's cancel arrives in that stage
        def hook(self, name, done=0, total=0):  # noqa: ANN001, ANN202
            if name == stage:
                worker_ctx.jobs.transition(self.id, "cancelling")
            return target(self, name, done, total)
        return hook

    monkeypatch.setattr(JobRun, "progress", cancel_at(report))
    monkeypatch.setattr(JobRun, "stage", cancel_at(stage_of))
    select_job.run(job_id)
    job = worker_ctx.jobs.get(job_id)
    assert job["status"] == "cancelled", job
    assert not worker_ctx.artifacts.exists(Keys.job_file(job_id, SCORES.filename))
