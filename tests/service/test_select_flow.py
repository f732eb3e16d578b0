"""End to end over HTTP: upload → validate → select job → poll → download."""

from __future__ import annotations

import gzip
import io
import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests.conftest import ALPACA_SAMPLE, HH_SAMPLE, read_rows, write_jsonl

FAST_ENCODER = {"name": "sentence", "max_seq_length": 128}


def _jsonl(body: bytes) -> list[dict]:
    return [json.loads(x) for x in body.decode().splitlines()]


def test_hh_upload_isa_job_download_and_cached_rerun(service):
    c = service.client()
    ds = service.upload(c, HH_SAMPLE)
    assert ds["status"] in ("uploaded", "validating", "ready")
    assert ds["size_bytes"] == HH_SAMPLE.stat().st_size and len(ds["sha256"]) == 64
    ds = service.wait_dataset(c, ds["id"])
    assert ds["status"] == "ready", ds
    assert (ds["shape"], ds["rows_valid"], ds["format"]) == ("hh_raw", 600, "jsonl")

    preview = c.get(f"/v1/datasets/{ds['id']}/rows", params={"offset": 0, "limit": 2}).json()
    assert preview["data"][0]["prompt"].endswith("\n\nAssistant:")

    body = {"type": "select", "dataset_id": ds["id"], "method": "isa",
            "budget": {"fraction": 0.05}, "encoder": FAST_ENCODER, "seed": 0}
    r = c.post("/v1/jobs", json=body)
    assert r.status_code == 201, r.text
    job = service.wait_job(c, r.json()["id"])
    assert job["status"] == "succeeded", job
    res = job["result"]
    assert res["rows_selected"] == 30 and res["units"] == 600
    assert res["embedding"]["texts"] == 1200
    assert res["embedding"]["newly_embedded"] == res["embedding"]["unique"] > 256  # chunked

    subset = _jsonl(c.get(res["files"]["jsonl"]).content)
    assert len(subset) == 30
    with gzip.open(HH_SAMPLE, "rt") as fh:
        source = {line.strip() for line in fh}
    assert all(json.dumps(row, ensure_ascii=False) in source or
               any(json.loads(s) == row for s in source) for row in subset[:5])
    source_rows = [json.loads(s) for s in source]
    assert all(row in source_rows for row in subset)

    scores = pq.read_table(io.BytesIO(c.get(f"/v1/jobs/{job['id']}/scores").content))
    assert scores.num_rows == 600
    table = scores.to_pylist()
    assert sorted(x["rank"] for x in table) == list(range(1, 601))
    assert {x["rank"] for x in table if x["selected"]} == set(range(1, 31))

    # Another budget on the same data set: no embedding at all, the scores come from cache.
    body2 = {**body, "budget": {"fraction": 0.1}}
    job2 = service.wait_job(c, c.post("/v1/jobs", json=body2).json()["id"])
    assert job2["status"] == "succeeded", job2
    assert job2["result"]["rows_selected"] == 60
    assert job2["result"]["score_cache_hit"] is True
    assert job2["result"]["embedding"]["newly_embedded"] == 0
    subset2 = _jsonl(c.get(job2["result"]["files"]["jsonl"]).content)
    assert all(row in subset2 for row in subset)  # same ranking, larger budget

    # Another method on the same data set: embeddings come from the cache.
    job3 = service.wait_job(c, c.post("/v1/jobs", json={**body, "method": "kcenter"}).json()["id"])
    assert job3["status"] == "succeeded", job3
    assert job3["result"]["embedding"]["newly_embedded"] == 0
    assert job3["result"]["embedding"]["cached"] == job3["result"]["embedding"]["unique"]

    metrics = c.get("/metrics").text
    assert 'isa_cache_events_total{cache="embed",outcome="hits"}' in metrics
    assert 'isa_jobs{status="succeeded"}' in metrics


def _alpaca(n: int = 150) -> list[dict]:
    return read_rows(ALPACA_SAMPLE, n)


def test_jsonl_parquet_and_conversational_uploads(service, tmp_path):
    c = service.client()
    rows = _alpaca()
    jsonl = write_jsonl(tmp_path / "prefs.jsonl", rows)
    parquet = tmp_path / "prefs.parquet"
    pq.write_table(pa.Table.from_pylist(rows), parquet)
    conv = write_jsonl(tmp_path / "conv.jsonl", [
        {"prompt": [{"role": "user", "content": r["prompt"]}],
         "chosen": [{"role": "assistant", "content": r["chosen"]}],
         "rejected": [{"role": "assistant", "content": r["rejected"]}], "id": f"c{i}"}
        for i, r in enumerate(rows)])
    cases = [(jsonl, {}, "standard", "density"), (parquet, {}, "standard", "margin"),
             (conv, {"id_field": "id"}, "conversational", "isa")]
    for path, form, shape, method in cases:
        ds = service.wait_dataset(c, service.upload(c, path, **form)["id"])
        assert ds["status"] == "ready" and ds["shape"] == shape, ds
        job = c.post("/v1/jobs", json={"type": "select", "dataset_id": ds["id"],
                                       "method": method, "budget": {"count": 15},
                                       "encoder": FAST_ENCODER}).json()
        job = service.wait_job(c, job["id"])
        assert job["status"] == "succeeded", job
        subset = _jsonl(c.get(f"/v1/jobs/{job['id']}/result", params={"format": "jsonl"}).content)
        assert len(subset) == 15
        if path is conv:
            ids = {r["id"] for r in subset}
            assert len(ids) == 15 and ids <= {f"c{i}" for i in range(150)}
            trl = _jsonl(c.get(job["result"]["files"]["trl"]).content)
            assert {r["row_id"] for r in trl} == ids  # the caller's ids echoed
            oa = _jsonl(c.get(job["result"]["files"]["openai"]).content)
            assert set(oa[0]) == {"input", "preferred_output", "non_preferred_output"}
        else:
            assert all(r in rows for r in subset)
        if path is parquet:
            back = pq.read_table(io.BytesIO(c.get(f"/v1/jobs/{job['id']}/result",
                                                  params={"format": "parquet"}).content))
            assert back.num_rows == 15 and "margin" in back.column_names
            assert min(back.column("margin").to_pylist()) >= sorted(
                (r["margin"] for r in rows), reverse=True)[14]


def test_an_overlapping_data_set_embeds_only_its_new_texts(service, tmp_path):
    c = service.client()
    rows = read_rows(ALPACA_SAMPLE, 400)[300:]
    # an encoder setting no other test uses: its cache namespace starts empty
    body = {"type": "select", "method": "isa", "budget": {"count": 5},
            "encoder": {"name": "sentence", "max_seq_length": 120}}
    first = service.wait_dataset(c, service.upload(c, write_jsonl(tmp_path / "a.jsonl",
                                                                   rows[:60]))["id"])
    job = service.wait_job(c, c.post("/v1/jobs", json={**body, "dataset_id": first["id"]}
                                     ).json()["id"])
    assert job["status"] == "succeeded", job
    before = job["result"]["embedding"]["newly_embedded"]
    assert before == job["result"]["embedding"]["unique"] > 0
    # the second upload: 40 rows seen before, 20 new ones
    second = service.wait_dataset(c, service.upload(c, write_jsonl(tmp_path / "b.jsonl",
                                                                   rows[20:80]))["id"])
    job = service.wait_job(c, c.post("/v1/jobs", json={**body, "dataset_id": second["id"]}
                                     ).json()["id"])
    assert job["status"] == "succeeded", job
    emb = job["result"]["embedding"]
    from isa.embed.templates import join_prompt
    old = {join_prompt(r["prompt"], r[s]) for r in rows[:60] for s in ("chosen", "rejected")}
    new = {join_prompt(r["prompt"], r[s]) for r in rows[60:80] for s in ("chosen", "rejected")}
    assert emb["newly_embedded"] == len(new - old) > 0
    assert emb["cached"] == emb["unique"] - len(new - old)


def test_a_select_job_with_the_static_encoder(service, tmp_path):
    pytest.importorskip("model2vec")
    from isa.embed.static import distill_static

    distill_static()  # what the worker image does at build: the job does not wait for it
    c = service.client()
    rows = read_rows(HH_SAMPLE, 200)
    path = write_jsonl(tmp_path / "static.jsonl", rows)
    ds = service.wait_dataset(c, service.upload(c, path)["id"])
    assert ds["status"] == "ready", ds
    body = {"type": "select", "dataset_id": ds["id"], "method": "isa",
            "budget": {"count": 20}, "encoder": {"name": "static"}, "seed": 0}
    job = service.wait_job(c, c.post("/v1/jobs", json=body).json()["id"])
    assert job["status"] == "succeeded", job
    res = job["result"]
    assert res["rows_selected"] == 20
    assert res["embedding"]["encoder"].startswith("static:all-MiniLM-L6-v2:")
    assert res["embedding"]["newly_embedded"] == res["embedding"]["unique"] == 400
    subset = _jsonl(c.get(res["files"]["jsonl"]).content)
    assert len(subset) == 20 and all(row in rows for row in subset)
    # its vectors are cached under their own name: a rerun embeds nothing, while the
    # sentence encoder on the same rows finds none of them
    again = service.wait_job(c, c.post("/v1/jobs", json={**body, "budget": {"count": 30}}
                                       ).json()["id"])
    assert again["result"]["embedding"]["newly_embedded"] == 0
    other = service.wait_job(c, c.post("/v1/jobs", json={
        **body, "encoder": {"name": "sentence", "max_seq_length": 40}}).json()["id"])
    assert other["status"] == "succeeded", other
    assert other["result"]["embedding"]["cached"] == 0
