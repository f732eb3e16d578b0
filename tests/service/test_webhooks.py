"""Webhooks end to end: a real receiver (an HTTP server in the test process) gets the
job's record when it ends, signed so that the Standard Webhooks reference library
verifies it; failed deliveries are retried with backoff and every attempt is on the job;
callback URLs pointing inside the network are refused."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from standardwebhooks.webhooks import Webhook

from tests.conftest import ALPACA_SAMPLE, HH_SAMPLE, read_rows, write_jsonl

FAST = {"name": "sentence", "max_seq_length": 128}


class Receiver:
    """Records every POST; ``/flaky`` answers 500 to the first two tries of a message."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, str], bytes]] = []
        self.tries: Counter[str] = Counter()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers["Content-Length"]))
                headers = {k.lower(): v for k, v in self.headers.items()}
                receiver.calls.append((self.path, headers, body))
                receiver.tries[headers["webhook-id"]] += 1
                fail = self.path == "/flaky" and receiver.tries[headers["webhook-id"]] <= 2
                self.send_response(500 if fail else 204)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def wait_for(self, n: int, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while len(self.calls) < n:
            assert time.monotonic() < deadline, self.calls
            time.sleep(0.1)


@pytest.fixture
def receiver():
    r = Receiver()
    yield r
    r.server.shutdown()


def _job(service, c, ds_id: str, **extra) -> dict:
    r = c.post("/v1/jobs", json={"type": "select", "dataset_id": ds_id, "method": "random",
                                 "budget": {"count": 5}, "encoder": FAST, **extra})
    assert r.status_code == 201, r.text
    return service.wait_job(c, r.json()["id"])


def _webhook_state(c, job_id: str, state: str, timeout: float = 60) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        hook = c.get(f"/v1/jobs/{job_id}").json()["webhook"]
        if hook and hook["state"] == state:
            return hook
        assert time.monotonic() < deadline, hook
        time.sleep(0.2)


def test_the_tenants_webhook_gets_each_end_signed(service, receiver):
    c = service.client("key-b")
    hook = c.put("/v1/webhook", json={"url": receiver.url + "/ok"}).json()
    assert hook["url"] == receiver.url + "/ok" and hook["secret"].startswith("whsec_")
    ds = service.wait_dataset(c, service.upload(c, HH_SAMPLE)["id"])
    job = _job(service, c, ds["id"])
    assert job["status"] == "succeeded"
    receiver.wait_for(1)
    path, headers, body = receiver.calls[0]
    event = Webhook(hook["secret"]).verify(body, headers)  # raises unless signed right
    assert path == "/ok" and event["type"] == "job.succeeded"
    assert event["data"]["id"] == job["id"] and event["data"]["result"]["rows_selected"] == 5
    log = _webhook_state(c, job["id"], "delivered")
    assert [a["status_code"] for a in log["attempts"]] == [204]
    # a rotated secret signs the next delivery, and during the overlap (24 h by default)
    # the old one too: a receiver still on it goes on verifying until it switches
    new = c.post("/v1/webhook/rotate-secret").json()
    assert new["secret"] != hook["secret"]
    assert new["previous_secret_valid_until"] > time.time() + 23 * 3600
    job2 = _job(service, c, ds["id"], seed=1)
    receiver.wait_for(2)
    _, headers2, body2 = receiver.calls[1]
    assert len(headers2["webhook-signature"].split()) == 2
    assert Webhook(new["secret"]).verify(body2, headers2)["data"]["id"] == job2["id"]
    assert Webhook(hook["secret"]).verify(body2, headers2)["data"]["id"] == job2["id"]
    # without an overlap only the newest secret signs
    newest = c.post("/v1/webhook/rotate-secret", params={"overlap_s": 0}).json()
    assert newest["previous_secret_valid_until"] is None
    job3 = _job(service, c, ds["id"], seed=2)
    receiver.wait_for(3)
    _, headers3, body3 = receiver.calls[2]
    assert Webhook(newest["secret"]).verify(body3, headers3)["data"]["id"] == job3["id"]
    for old in (hook["secret"], new["secret"]):
        with pytest.raises(Exception, match="No matching signature"):
            Webhook(old).verify(body3, headers3)
    assert c.put("/v1/webhook", json={"url": None}).json()["url"] is None


def test_failed_deliveries_are_retried_and_logged_on_the_job(service, receiver):
    c = service.client("key-a")
    ds = service.wait_dataset(c, service.upload(c, HH_SAMPLE)["id"])
    job = _job(service, c, ds["id"], callback_url=receiver.url + "/flaky")
    log = _webhook_state(c, job["id"], "delivered")
    assert [a["status_code"] for a in log["attempts"]] == [500, 500, 204]
    assert [a["attempt"] for a in log["attempts"]] == [1, 2, 3]
    gaps = [b["at"] - a["at"] for a, b in zip(log["attempts"], log["attempts"][1:],
                                                  strict=False)]
    assert gaps[0] >= 0.3 and gaps[1] >= 1.2  # 0.3 s, then 4× longer
    ids = {h["webhook-id"] for _, h, _ in receiver.calls}
    assert len(receiver.calls) == 3 and len(ids) == 1  # one message id: receivers dedupe
    assert json.loads(receiver.calls[-1][2])["data"]["status"] == "succeeded"


@pytest.mark.parametrize("url", ["http://169.254.169.254/latest/meta-data",
                                 "http://10.0.0.5:8080/", "http://[::1]:8000/x"])
def test_callback_urls_inside_the_network_are_refused(service, url):
    c = service.client("key-a")
    r = c.post("/v1/jobs", json={"type": "select", "dataset_id": "ds_x", "method": "random",
                                 "budget": {"count": 5}, "callback_url": url})
    assert r.status_code == 422 and r.json()["error"]["code"] == "invalid_callback_url"
    r = c.put("/v1/webhook", json={"url": url})
    assert r.status_code == 422 and r.json()["error"]["code"] == "invalid_callback_url"
    r = c.post("/v1/jobs", json={"type": "select", "dataset_id": "ds_x", "budget": {"count": 1},
                                 "callback_url": "file:///etc/passwd"})
    assert r.status_code == 422 and r.json()["error"]["code"] == "validation_error"


def test_a_delivery_does_not_wait_behind_long_jobs(service, receiver, tmp_path):
    """Both of the worker's slots train; a job that ends meanwhile (cancelled while
    queued) is announced at once by the worker of the webhook queue (threads)."""
    c = service.client("key-a")
    ds = service.wait_dataset(c, service.upload(c, write_jsonl(
        tmp_path / "p.jsonl", read_rows(ALPACA_SAMPLE, 20)))["id"])
    sel = _job(service, c, ds["id"])
    log = (service.data_dir / f"hooks-{uuid.uuid4().hex[:6]}.log").open("wb")
    hooks = subprocess.Popen(
        [str(Path(sys.executable).parent / "celery"), "-A", "workers.worker", "worker",
         "-Q", "webhooks", "--pool", "threads", "-c", "4", "-n",
         f"hooks-{uuid.uuid4().hex[:6]}@%h", "--without-gossip", "--without-mingle"],
        env=service.env, stdout=log, stderr=subprocess.STDOUT)
    long_jobs = []
    try:
        for _ in range(service.concurrency):  # every slot of the worker busy training
            r = c.post("/v1/jobs", json={"type": "align", "select_job_id": sel["id"], "align": {
                "method": "dpo", "base_model": "tiny-llama-random", "max_steps": 100_000,
                "batch_size": 1, "max_length": 64}})
            assert r.status_code == 201, r.text
            long_jobs.append(r.json()["id"])
        deadline = time.monotonic() + 120
        while any(c.get(f"/v1/jobs/{j}").json()["stage"] != "training" for j in long_jobs):
            assert time.monotonic() < deadline, [c.get(f"/v1/jobs/{j}").json()
                                                 for j in long_jobs]
            time.sleep(0.5)
        waiting = c.post("/v1/jobs", json={
            "type": "select", "dataset_id": ds["id"], "method": "random",
            "budget": {"count": 5}, "callback_url": receiver.url + "/now"}).json()
        assert c.get(f"/v1/jobs/{waiting['id']}").json()["status"] == "queued"
        assert c.post(f"/v1/jobs/{waiting['id']}/cancel").status_code == 200
        receiver.wait_for(1, timeout=30)
        path, _, body = receiver.calls[0]
        assert path == "/now" and json.loads(body)["type"] == "job.cancelled"
        assert [c.get(f"/v1/jobs/{j}").json()["status"] for j in long_jobs] == \
            ["running"] * len(long_jobs)  # delivered while both still trained
    finally:
        for j in long_jobs:
            c.post(f"/v1/jobs/{j}/cancel")
        for j in long_jobs:
            service.wait_job(c, j, timeout=120)
        hooks.terminate()
        hooks.wait(timeout=30)
