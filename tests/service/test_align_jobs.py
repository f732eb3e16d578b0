"""Align jobs over HTTP on a real worker: a tiny random Llama, a few DPO steps."""

from __future__ import annotations

import io
import zipfile

from tests.conftest import ALPACA_SAMPLE, read_rows, write_jsonl


def test_align_on_a_select_jobs_subset_returns_metrics_plot_and_a_loadable_archive(
        service, tmp_path):
    c = service.client()
    rows = read_rows(ALPACA_SAMPLE, 60)
    ds = service.wait_dataset(c, service.upload(c, write_jsonl(tmp_path / "p.jsonl",
                                                               rows[:40]))["id"])
    held = service.wait_dataset(c, service.upload(c, write_jsonl(tmp_path / "h.jsonl",
                                                                 rows[40:]))["id"])
    select = service.wait_job(c, c.post("/v1/jobs", json={
        "type": "select", "dataset_id": ds["id"], "method": "random",
        "budget": {"count": 12}}).json()["id"])
    assert select["status"] == "succeeded"
    job = c.post("/v1/jobs", json={
        "type": "align", "select_job_id": select["id"], "eval_dataset_id": held["id"],
        "align": {"method": "dpo", "base_model": "tiny-llama-random", "max_steps": 3,
                  "batch_size": 2, "max_length": 128, "learning_rate": 1e-3,
                  "eval_pairs": 10}})
    assert job.status_code == 201, job.text
    assert job.json()["queue"] == "cpu"  # no GPU worker here
    job = service.wait_job(c, job.json()["id"], timeout=600)
    assert job["status"] == "succeeded", job
    res = job["result"]
    assert res["steps"] == 3 and res["train_examples"] == 12
    assert job["progress"] == {"done": 3, "total": 3, "loss": job["progress"]["loss"]}
    assert isinstance(job["progress"]["loss"], float)
    ev = res["evaluation"]
    assert ev["pairs"] == 10 and {"reward_accuracy", "reward_margin_mean"} <= set(ev["policy"])
    assert "logp_accuracy" in ev["base"]
    metrics = c.get(res["files"]["json"]).json()
    assert [h["step"] for h in metrics["history"]] == [1, 2, 3]
    assert "rewards/margins" in metrics["history"][0]
    assert c.get(res["files"]["png"]).content[:4] == b"\x89PNG"

    archive = c.get(res["files"]["archive"])
    assert archive.headers["content-type"] == "application/zip"
    folder = tmp_path / "model"
    zipfile.ZipFile(io.BytesIO(archive.content)).extractall(folder)
    from peft import AutoPeftModelForCausalLM
    from transformers import AutoTokenizer

    model = AutoPeftModelForCausalLM.from_pretrained(str(folder))
    tok = AutoTokenizer.from_pretrained(str(folder))
    out = model.generate(**tok("What is 2+2?", return_tensors="pt"), max_new_tokens=4,
                         do_sample=False)
    assert out.shape[1] > len(tok("What is 2+2?")["input_ids"])


def test_align_request_errors(service):
    c = service.client()
    r = c.post("/v1/jobs", json={"type": "align", "dataset_id": "ds_x",
                                 "align": {"base_model": "gpt-9"}})
    assert r.status_code == 422 and r.json()["error"]["code"] == "unknown_model"
    r = c.post("/v1/jobs", json={"type": "align", "select_job_id": "job_nope"})
    assert r.status_code == 404 and r.json()["error"]["code"] == "job_not_found"
    r = c.post("/v1/jobs", json={"type": "align"})
    assert r.status_code == 422 and "dataset_id" in r.json()["error"]["message"]


def test_cancel_stops_training_and_keeps_what_was_trained(service, tmp_path):
    import time

    c = service.client()
    ds = service.wait_dataset(c, service.upload(c, write_jsonl(
        tmp_path / "p.jsonl", read_rows(ALPACA_SAMPLE, 40)))["id"])
    job = c.post("/v1/jobs", json={
        "type": "align", "dataset_id": ds["id"],
        "align": {"base_model": "tiny-llama-random", "max_steps": 500, "batch_size": 2,
                  "max_length": 64}}).json()
    deadline = time.monotonic() + 300
    while c.get(f"/v1/jobs/{job['id']}").json()["progress"]["done"] < 2:
        assert time.monotonic() < deadline
        time.sleep(0.2)
    assert c.post(f"/v1/jobs/{job['id']}/cancel").json()["status"] == "cancelling"
    job = service.wait_job(c, job["id"], timeout=120)
    assert job["status"] == "cancelled", job
    assert job["result"]["stopped_early"] and 2 <= job["result"]["steps"] < 500
    assert c.get(job["result"]["files"]["archive"]).status_code == 200
