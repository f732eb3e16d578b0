"""RabbitMQ as the broker (``ISA_BROKER_URL=amqp://…``, docker-compose's default): quorum
queues, publisher confirms, a killed worker's job redelivered by the broker itself, and
the broker restarting mid-job. The first tests get a virtual host of their own on the
machine's RabbitMQ server; the restart, a RabbitMQ node of its own (the machine's is never
stopped). Each test has a Redis server of its own for the state."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator

import pytest

from tests.conftest import ALPACA_SAMPLE, HH_SAMPLE, read_rows, varied_rows, write_jsonl
from tests.service.harness import RabbitServer, RedisServer, Service, running_service

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


@pytest.fixture()
def own_rabbit(tmp_path) -> Iterator[RabbitServer]:
    if not RabbitServer.installed():
        pytest.skip("needs rabbitmq-server installed (the test starts a node of its own)")
    server = RabbitServer(tmp_path / "rabbit")
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture()
def restartable_service(own_rabbit, tmp_path) -> Iterator[Service]:
    redis_server = RedisServer(tmp_path)
    redis_server.start()
    data = tmp_path / "svc"
    data.mkdir()
    # smaller chunks: a short job that still has parts waiting in the broker over the restart
    env = {**SUPERVISION, "ISA_EMBED_CHUNK_SIZE": "128", "ISA_BROKER_URL": own_rabbit.url}
    try:
        with running_service(redis_server.url, data, concurrency=1, extra_env=env) as svc:
            yield svc
    finally:
        redis_server.stop()


#: how long the broker stays down
BROKER_DOWN_S = 5


def test_a_job_survives_a_broker_restart_and_the_worker_reconnects(restartable_service,
                                                                  own_rabbit, tmp_path):
    svc = restartable_service
    c = svc.client()
    # 15 chunks of 128 texts: enough work that the job is still embedding once
    # ``rabbitmqctl stop`` has returned (it takes seconds; 3 chunks were done by then on
    # a fast machine), so parts wait in the broker over the restart
    rows = varied_rows(read_rows(ALPACA_SAMPLE, 300), 3)
    job_id = svc.select_while_embedding(c, write_jsonl(tmp_path / "d.jsonl.gz", rows, gz=True),
                                        max_seq_length=64)
    assert svc.worker is not None
    worker = svc.worker
    dataset_id = c.get(f"/v1/jobs/{job_id}").json()["request"]["dataset_id"]
    jobs_before = c.get("/v1/jobs").json()["count"]
    own_rabbit.stop()
    t_down = time.monotonic()
    # the state (Redis) is up: the job reads as it is
    r = c.get(f"/v1/jobs/{job_id}")
    assert r.status_code == 200 and r.json()["status"] == "running", r.text
    # a new job's message cannot be sent: 503 with a retry hint, and no job recorded
    t = time.monotonic()
    r = c.post("/v1/jobs", json={"type": "select", "dataset_id": dataset_id,
                                 "method": "random", "budget": {"count": 5}})
    post_s = time.monotonic() - t
    assert r.status_code == 503, r.text
    assert r.json()["error"]["code"] == "service_unavailable"
    assert "message broker" in r.json()["error"]["message"]  # not "store": Redis is up
    assert int(r.headers["retry-after"]) > 0
    assert c.get("/v1/jobs").json()["count"] == jobs_before
    # nor a data set's validation: 503, and the upload leaves no file behind
    up = c.post("/v1/datasets", files={"file": ("x.jsonl", b'{"prompt":"p","chosen":"a",'
                                                b'"rejected":"b"}\n')})
    assert up.status_code == 503, up.text
    assert up.json()["error"]["code"] == "service_unavailable"
    assert len(list((svc.data_dir / "artifacts" / "datasets").iterdir())) == 1
    assert c.get("/readyz").status_code == 503  # no worker answers a ping
    assert c.get("/healthz").status_code == 200  # the process itself is up
    time.sleep(max(0.0, BROKER_DOWN_S - (time.monotonic() - t_down)))
    down_s = time.monotonic() - t_down
    own_rabbit.start()
    t_up = time.monotonic()
    doc = svc.wait_job(c, job_id, timeout=240)
    assert doc["status"] == "succeeded", doc
    assert doc["result"]["rows_selected"] == 45  # 5% of 900
    result = c.get(f"/v1/jobs/{job_id}/result")
    assert result.status_code == 200
    assert len(result.text.splitlines()) == 45
    # the parts waiting in the broker were delivered after the restart: nothing was
    # sent again by the supervisor (it leaves a RabbitMQ job's waiting parts alone)
    assert doc["attempts"] == 0, doc
    # the same worker process reconnected (the test never restarted it) ...
    assert svc.worker is worker and worker.poll() is None
    log = svc.tail("worker", 2000)
    assert "Connection to broker lost" in log
    assert log.count(f"Connected to amqp://guest:**@127.0.0.1:{own_rabbit.port}//") >= 2
    # ... the queue is still the durable quorum one, and the gateway sends jobs again
    queues = dict(line.split("\t")[:2] for line in
                  own_rabbit.ctl("list_queues", "name", "type").splitlines() if "\t" in line)
    assert queues.get("cpu") == "quorum", queues
    again = c.post("/v1/jobs", json={"type": "select", "dataset_id": dataset_id,
                                     "method": "random", "budget": {"count": 5}})
    assert again.status_code == 201, again.text
    assert svc.wait_job(c, again.json()["id"], timeout=60)["status"] == "succeeded"
    assert c.get("/readyz").status_code == 200
    print(f"broker restart: down {down_s:.1f} s (a refused POST took {post_s:.1f} s); "
          f"the job succeeded {time.monotonic() - t_up:.0f} s after the broker came back")
