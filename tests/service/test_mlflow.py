"""MLflow tracking against a real ``mlflow server`` process (sqlite backend, artifacts
served by it): select, evaluate and align jobs log their runs; an unreachable server
never fails a job; a tracking URI inside the network is refused like a webhook's."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import HH_SAMPLE, read_rows, write_jsonl
from tests.service.harness import free_port, wait_http

FAST = {"name": "sentence", "max_seq_length": 128}


@pytest.fixture(scope="module")
def mlflow_server(tmp_path_factory):
    exe = Path(sys.executable).parent / "mlflow"
    if not exe.exists() and shutil.which("mlflow") is None:
        pytest.skip("the mlflow server is not installed (pip install -e '.[dev]')")
    folder, port = tmp_path_factory.mktemp("mlflow"), free_port()
    log = (folder / "server.log").open("wb")
    proc = subprocess.Popen(
        [str(exe), "server", "--backend-store-uri", f"sqlite:///{folder / 'mlflow.db'}",
         "--artifacts-destination", str(folder / "artifacts"), "--serve-artifacts",
         "--host", "127.0.0.1", "--port", str(port), "--workers", "1"],
        stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    wait_http(f"{url}/health", [proc], lambda: (folder / "server.log").read_text()[-3000:])
    yield url
    proc.terminate()
    proc.wait(timeout=20)


def _run(url: str, run_id: str):
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=url)
    return client, client.get_run(run_id)


def test_select_evaluate_and_align_jobs_log_runs(service, mlflow_server, tmp_path):
    # a tenant of its own: the evaluate job fills its embedding cache
    c = service.client("key-mlflow")
    ds = service.wait_dataset(c, service.upload(c, HH_SAMPLE)["id"])
    track = {"tracking_uri": mlflow_server, "experiment": "isa-tests"}

    sel = service.wait_job(c, c.post("/v1/jobs", json={
        "type": "select", "dataset_id": ds["id"], "method": "random", "budget": {"count": 30},
        "encoder": FAST, "mlflow": {**track, "run_name": "my-select"}}).json()["id"])
    assert sel["status"] == "succeeded", sel
    client, run = _run(mlflow_server, sel["result"]["mlflow"]["run_id"])
    assert run.info.run_name == "my-select" and run.info.status == "FINISHED"
    assert run.data.params["method"] == "random" and run.data.params["budget.count"] == "30"
    assert run.data.metrics["rows_selected"] == 30 and run.data.metrics["units"] == 600
    assert run.data.metrics["selected_fraction"] == pytest.approx(0.05)
    assert run.data.tags["isa.job_id"] == sel["id"]
    # the run spans the job, with the time of each stage and the encoder as it ran
    assert abs(run.info.start_time - sel["started_at"] * 1000) < 2_000  # not the logging
    assert run.info.end_time >= int(sel["finished_at"] * 1000) - 5_000
    stages = {k.split(".", 1)[1] for k in run.data.metrics if k.startswith("stage_seconds.")}
    assert {"reading", "writing"} <= stages and "tracking" not in stages  # random: no embedding
    # the data set as its input: lineage by name, digest, rows and shape
    (inp,) = run.inputs.dataset_inputs
    assert (inp.dataset.name, inp.dataset.digest) == (HH_SAMPLE.name, ds["sha256"][:36])
    assert json.loads(inp.dataset.profile)["rows"] == 600
    assert {t.key: t.value for t in inp.tags}["isa.dataset_id"] == ds["id"]
    # statistics and a sample of the kept rows; the subset itself stays in the service
    assert {a.path for a in client.list_artifacts(run.info.run_id)} == {
        "subset_stats.json", "subset_sample.jsonl"}
    sample = Path(client.download_artifacts(run.info.run_id, "subset_sample.jsonl",
                                            str(tmp_path)))
    assert len(sample.read_text().splitlines()) == 20

    ev = service.wait_job(c, c.post("/v1/jobs", json={
        "type": "evaluate", "dataset_id": ds["id"], "method": "random",
        "budget": {"fraction": 0.25}, "encoder": FAST, "mlflow": track}).json()["id"])
    assert ev["status"] == "succeeded", ev
    client, run = _run(mlflow_server, ev["result"]["mlflow"]["run_id"])
    assert run.data.metrics["accuracy"] == pytest.approx(ev["result"]["accuracy"])
    # the interval and the pair counts as metrics of their own, with clear names
    m = run.data.metrics
    assert m["accuracy_ci_low"] <= m["accuracy"] <= m["accuracy_ci_high"]
    assert m["subset_pairs"] < m["pool_pairs"] and m["eval_pairs"] > 0
    assert run.data.params["encoder.resolved"] == ev["result"]["encoder"]
    assert "128" in ev["result"]["encoder"]  # the encoder as it ran, its window included
    # no experiment named: the tenant's own
    assert client.get_experiment(run.info.experiment_id).name == "isa-tests"
    dflt = service.wait_job(c, c.post("/v1/jobs", json={
        "type": "select", "dataset_id": ds["id"], "method": "random", "budget": {"count": 3},
        "mlflow": {"tracking_uri": mlflow_server}}).json()["id"])
    _, drun = _run(mlflow_server, dflt["result"]["mlflow"]["run_id"])
    assert client.get_experiment(drun.info.experiment_id).name == "isa-tenant-mlflow"
    assert "length_rule_accuracy" in run.data.metrics
    assert {a.path for a in client.list_artifacts(run.info.run_id)} == {"report.json",
                                                                       "plot.png"}

    al = service.wait_job(c, c.post("/v1/jobs", json={
        "type": "align", "select_job_id": sel["id"], "mlflow": track,
        "align": {"method": "dpo", "base_model": "tiny-llama-random", "max_steps": 4,
                  "batch_size": 2, "max_length": 96, "learning_rate": 1e-3,
                  "logging_steps": 1}}).json()["id"], timeout=600)
    assert al["status"] == "succeeded", al
    client, run = _run(mlflow_server, al["result"]["mlflow"]["run_id"])
    steps = client.get_metric_history(run.info.run_id, "train.loss")
    assert [m.step for m in steps] == [1, 2, 3, 4]  # the training log, per step
    assert run.data.params["align.base_model"] == "tiny-llama-random"
    assert {a.path for a in client.list_artifacts(run.info.run_id)} == {
        "metrics.json", "plot.png", "model.zip"}


def test_a_failed_job_logs_a_failed_run_named_by_its_error(service, mlflow_server, tmp_path):
    c = service.client("key-mlflow")
    small = write_jsonl(tmp_path / "small.jsonl", read_rows(HH_SAMPLE, 20))
    ds = service.wait_dataset(c, service.upload(c, small)["id"])
    # valid as a request (64 components is within the bound); the library refuses it once
    # it sees the data: 40 items cannot fit 64 components
    job = service.wait_job(c, c.post("/v1/jobs", json={
        "type": "select", "dataset_id": ds["id"], "method": "isa",
        "params": {"n_components": 64}, "budget": {"count": 10}, "encoder": FAST,
        "mlflow": {"tracking_uri": mlflow_server, "experiment": "isa-tests"}}).json()["id"])
    assert job["status"] == "failed" and job["error"]["code"] == "invalid_parameters", job
    client, run = _run(mlflow_server, job["error"]["details"]["mlflow"]["run_id"])
    assert run.info.status == "FAILED"
    assert run.data.tags["isa.error_code"] == "invalid_parameters"
    assert "64" in run.data.tags["isa.error"] and run.data.tags["isa.job_id"] == job["id"]
    assert run.data.params["params.n_components"] == "64"
    # no results, only how long it took to fail in each stage
    assert run.data.metrics and all(k.startswith("stage_seconds.") for k in run.data.metrics)


def test_an_unreachable_server_never_fails_the_job(service):
    c = service.client("key-a")
    ds = service.wait_dataset(c, service.upload(c, HH_SAMPLE)["id"])
    dead = f"http://127.0.0.1:{free_port()}"
    job = service.wait_job(c, c.post("/v1/jobs", json={
        "type": "select", "dataset_id": ds["id"], "method": "random", "budget": {"count": 3},
        "mlflow": {"tracking_uri": dead}}).json()["id"])
    assert job["status"] == "succeeded" and job["result"]["rows_selected"] == 3
    assert "error" in job["result"]["mlflow"]


def test_a_tracking_uri_inside_the_network_is_refused(service):
    c = service.client("key-a")
    r = c.post("/v1/jobs", json={"type": "select", "dataset_id": "ds_x", "budget": {"count": 1},
                                 "mlflow": {"tracking_uri": "http://169.254.169.254/"}})
    assert r.status_code == 422 and r.json()["error"]["code"] == "invalid_tracking_uri"
