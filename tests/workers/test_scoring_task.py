"""The map/reduce scoring tasks' bodies, in this process on the real Redis: embeddings
that left the cache while a job ran are embedded again instead of failing the job."""

from __future__ import annotations

import numpy as np

from isa.embed.base import embed_texts
from isa.pipeline import read_units
from tests.conftest import write_jsonl
from tests.workers.conftest import add_dataset, add_job


def test_a_scoring_task_embeds_again_what_left_the_cache(worker_ctx, tmp_path, hh_rows):
    from workers.lifecycle import load
    from workers.tasks.scoring import _vectors

    dataset_id = add_dataset(worker_ctx, write_jsonl(tmp_path / "hh.jsonl", hh_rows[:30]))
    job_id = add_job(worker_ctx, {"type": "select", "dataset_id": dataset_id,
                                  "method": "isa", "budget": {"count": 3},
                                  "encoder": {"name": "sentence", "max_seq_length": 64}})
    job = load(worker_ctx, job_id)
    units, _ = read_units(job.open(job.dataset(dataset_id)))
    encoder = worker_ctx.encoder(job.request.encoder)
    store = worker_ctx.embeddings(job.tenant)
    embed_texts(units.texts, encoder, cache=store)
    keys = units.text_keys
    before = store.matrix(encoder.name, keys)
    for k in keys[::3]:  # what an evicting cache Redis does to the index meanwhile
        k = bytes(k)
        store.r.hdel(store._bucket(encoder.name, k), k[2:])
    assert store.contains_many(encoder.name, keys).sum() == len(keys) - len(keys[::3])

    X = _vectors(job, encoder.name, keys)
    assert store.contains_many(encoder.name, keys).all()  # back in the cache
    cos = (X * before).sum(1) / np.linalg.norm(X, axis=1) / np.linalg.norm(before, axis=1)
    assert cos.min() > 0.99  # the same texts' vectors, in the job's order
    np.testing.assert_array_equal(X[1::3], before[1::3])  # kept ones read as they were
