"""The public layouts through the running service: upload, detection, validation counts,
a select job, and the trl/kto exports the workers write, as TRL reads them."""

from __future__ import annotations

import json

from tests.conftest import ALPACA_SAMPLE, read_rows, write_jsonl
from tests.isa.test_layouts import layout_rows, ranked_rows


def _jsonl(body: bytes) -> list[dict]:
    return [json.loads(x) for x in body.decode().splitlines()]


def test_ultrafeedback_binarized_and_ranked_rows_upload_select_and_export(service, tmp_path):
    from trl.data_utils import is_conversational, maybe_extract_prompt

    c = service.client()
    pairs = [r for r in read_rows(ALPACA_SAMPLE, 60) if r["chosen"] != r["rejected"]][:40]
    uf = write_jsonl(tmp_path / "uf.jsonl", layout_rows("ultrafeedback_binarized", pairs))
    ds = service.wait_dataset(c, service.upload(c, uf)["id"])
    assert ds["status"] == "ready", ds
    assert (ds["shape"], ds["rows_valid"]) == ("ultrafeedback_binarized", 40)
    job = service.wait_job(c, c.post("/v1/jobs", json={
        "type": "select", "dataset_id": ds["id"], "method": "margin",
        "budget": {"count": 10}}).json()["id"])
    assert job["status"] == "succeeded", job
    trl = _jsonl(c.get(job["result"]["files"]["trl"]).content)
    assert len(trl) == 10
    for row in trl:  # message prompt and answers, the source's prompt string set aside
        assert is_conversational({"prompt": row["prompt"]}) and maybe_extract_prompt(row) == row
        assert row["chosen"][-1]["role"] == "assistant" and "messages" not in row
        assert row["source_messages"][-1] == row["chosen"][-1]
    # the margin method read score_chosen - score_rejected: the 10 widest margins
    widest = sorted((5 * p["margin"] for p in pairs), reverse=True)[9]
    assert all(r["score_chosen"] - r["score_rejected"] >= widest - 1e-9 for r in trl)

    ranked = write_jsonl(tmp_path / "ranked.jsonl", ranked_rows("nectar"))
    ds = service.wait_dataset(c, service.upload(c, ranked, pairing="best_vs_each")["id"])
    assert ds["status"] == "ready" and ds["shape"] == "ranked", ds
    assert ds["examples"] > ds["rows_valid"] == 12  # the pairs the rows hold
    job = service.wait_job(c, c.post("/v1/jobs", json={
        "type": "select", "dataset_id": ds["id"], "method": "random",
        "budget": {"count": 14}}).json()["id"])
    assert job["status"] == "succeeded", job
    assert job["result"]["units"] > 12  # more pairs than rows
    kto = _jsonl(c.get(job["result"]["files"]["kto"]).content)
    assert len(kto) == 28 and sorted(r["label"] for r in kto) == [False] * 14 + [True] * 14
    assert all("/" in r["row_id"] for r in kto)
    # an unknown pairing is refused at the door, naming the field
    with open(ranked, "rb") as fh:
        r = c.post("/v1/datasets", files={"file": ("r.jsonl", fh)}, data={"pairing": "all"})
    assert r.status_code == 422, r.text


def test_a_dpo_native_select_job_scores_with_the_reference_model_once(service, tmp_path):
    c = service.client()
    rows = [r for r in read_rows(ALPACA_SAMPLE, 40) if r["chosen"] != r["rejected"]][:30]
    ds = service.wait_dataset(c, service.upload(c, write_jsonl(tmp_path / "a.jsonl", rows))["id"])
    assert ds["status"] == "ready", ds
    body = {"type": "select", "dataset_id": ds["id"], "method": "margin_bayes",
            "budget": {"count": 6}}
    job = service.wait_job(c, c.post("/v1/jobs", json=body).json()["id"])
    assert job["status"] == "succeeded", job
    ref = job["result"]["reference"]
    assert ref["model"].startswith("ref:tiny-llama-random") and ref["embedded"] == 60
    assert len(_jsonl(c.get(job["result"]["files"]["jsonl"]).content)) == 6
    # another DPO-native method on the same pairs: the store has every log-probability
    job2 = service.wait_job(c, c.post("/v1/jobs", json={
        **body, "method": "implicit_margin", "params": {"order": "hard"}}).json()["id"])
    assert job2["status"] == "succeeded", job2
    assert (job2["result"]["reference"]["cached"], job2["result"]["reference"]["embedded"]) == (
        60, 0)
