"""RabbitMQ as the broker (``ISA_BROKER_URL=amqp://…``, docker-compose's default): quorum
queues, publisher confirms, and a killed worker's job redelivered by the broker itself.
Each test run gets a virtual host of its own on the machine's RabbitMQ server, and a
Redis server of its own for the state."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator

import pytest

from tests.conftest import ALPACA_SAMPLE, HH_SAMPLE, read_rows, varied_rows, write_jsonl
from tests.service.harness import RedisServer, Service, running_service

SUPERVISION = {"ISA_HEARTBEAT_INTERVAL_S": "0.5", "ISA_STALE_AFTER_S": "4",
               "ISA_SUPERVISE_EVERY_S": "1", "ISA_EMBED_CHUNK_SIZE": "256"}


def _rabbit_up() -> bool:
    try:
        with socket.create_connection(("127.0.0.1", 5672), timeout=2):
            return True
    except OSError:
        return False


def _ctl(*args: str) -> str:
    return subprocess.run(["rabbitmqctl", "-q", *args], capture_output=True, text=True,
                          check=True, timeout=60).stdout


@pytest.fixture(scope="module")
def vhost() -> Iterator[str]:
    if not shutil.which("rabbitmqctl") or not _rabbit_up():
        pytest.skip("needs a RabbitMQ server on 127.0.0.1:5672 and rabbitmqctl (.ci/run "
                    "starts the machine's)")
    name = f"isa-test-{uuid.uuid4().hex[:8]}"
    _ctl("add_vhost", name)
    _ctl("set_permissions", "-p", name, "guest", ".*", ".*", ".*")
    yield name
    _ctl("delete_vhost", name)


@pytest.fixture()
def rabbit_service(vhost, tmp_path) -> Iterator[Service]:
    redis_server = RedisServer(tmp_path)
    redis_server.start()
    data = tmp_path / "svc"
    data.mkdir()
    env = {**SUPERVISION, "ISA_BROKER_URL": f"amqp://guest:guest@127.0.0.1:5672/{vhost}"}
    try:
        with running_service(redis_server.url, data, concurrency=1, extra_env=env) as svc:
            yield svc
    finally:
        redis_server.stop()


def test_a_select_job_runs_through_quorum_queues(rabbit_service, vhost, tmp_path):
    c = rabbit_service.client()
    path = write_jsonl(tmp_path / "d.jsonl", read_rows(HH_SAMPLE, 40))
    ds = rabbit_service.wait_dataset(c, rabbit_service.upload(c, path)["id"])
    assert ds["status"] == "ready", ds
    job = rabbit_service.wait_job(c, c.post("/v1/jobs", json={
        "type": "select", "dataset_id": ds["id"], "method": "random",
        "budget": {"count": 5}}).json()["id"])
    assert job["status"] == "succeeded", job
    queues = dict(line.split("\t")[:2] for line in
                  _ctl("list_queues", "-p", vhost, "name", "type").splitlines()
                  if "\t" in line)
    assert queues.get("cpu") == "quorum", queues
    assert c.get("/readyz").status_code == 200


def test_a_killed_workers_job_is_redelivered_and_finishes(rabbit_service, tmp_path):
    c = rabbit_service.client()
    rows = varied_rows(read_rows(ALPACA_SAMPLE, 500), 3)
    job_id = rabbit_service.select_while_embedding(
        c, write_jsonl(tmp_path / "d.jsonl.gz", rows, gz=True), max_seq_length=64)
    rabbit_service.kill_worker()
    t_kill = time.monotonic()
    rabbit_service.start_worker()
    job = rabbit_service.wait_job(c, job_id, timeout=240)
    assert job["status"] == "succeeded", job
    assert job["result"]["rows_selected"] > 0
    assert time.monotonic() - t_kill < 240
