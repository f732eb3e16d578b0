"""A worker loads no encoder for a job whose every text is in the embedding cache (the
task body run in this process on the real Redis; see tests/isa/test_lazy_encoder.py)."""

from __future__ import annotations

from tests.conftest import write_jsonl
from tests.isa.test_lazy_encoder import loads  # noqa: F401 - the load-counting fixture
from tests.workers.conftest import add_dataset, add_job


def test_worker_rerun_on_cached_texts_loads_no_model(loads,  # noqa: F811
                                                     worker_ctx, tmp_path, hh_rows):
    from workers.context import context
    from workers.tasks.select import select_job

    dataset_id = add_dataset(worker_ctx, write_jsonl(tmp_path / "hh.jsonl", hh_rows[:30]))
    body = {"type": "select", "dataset_id": dataset_id, "method": "isa",
            "budget": {"count": 3}, "encoder": {"name": "sentence", "max_seq_length": 96}}
    select_job.run(add_job(worker_ctx, body))
    assert len(loads) == 1

    context.cache_clear()  # a fresh worker process: no encoder kept from the first job
    ctx = context()
    # another seed: the scores are computed again (no score cache hit), on cached vectors
    job = add_job(ctx, {**body, "params": {"random_state": 1}})
    select_job.run(job)
    doc = ctx.jobs.get(job)
    assert doc["status"] == "succeeded" and doc["result"]["score_cache_hit"] is False, doc
    assert doc["result"]["embedding"]["cached"] == 60
    assert len(loads) == 1, "a job on cached texts loaded the encoder"
