"""Faults with real processes: a worker killed mid-job (alone, or beside a second worker
that goes on with the job's other chunks), Redis restarted mid-job. The
service here has a Redis server of its own (restartable, with an append-only file) and
supervision tuned to seconds; the bounds asserted are the ones the README states."""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import ALPACA_SAMPLE, read_rows, varied_rows, write_jsonl
from tests.service.harness import RedisServer, Service, kill_worker_mid_chunk, running_service

#: supervision in seconds (production defaults: beat 10 s, stale 60 s, look every 15 s)
SUPERVISION = {"ISA_HEARTBEAT_INTERVAL_S": "0.5", "ISA_STALE_AFTER_S": "4",
               "ISA_SUPERVISE_EVERY_S": "1", "ISA_EMBED_CHUNK_SIZE": "256",
               "ISA_METRICS_KEY": "scrape-me", "ISA_MAX_ACTIVE_JOBS_PER_TENANT": "2",
               "ISA_MAX_STORED_BYTES_PER_TENANT": "4000000", "ISA_REQUEUE_LOST_AFTER_S": "3"}
#: from the kill (or the restart) to a finished job, at most
RECOVERY_BOUND_S = 240


@pytest.fixture()
def own_redis(tmp_path) -> Iterator[RedisServer]:
    if not shutil.which("redis-server"):
        pytest.skip("needs redis-server on PATH (.ci/run starts the machine's)")
    server = RedisServer(tmp_path)
    server.start()
    yield server
    if server.proc is not None and server.proc.poll() is None:
        server.stop()


@pytest.fixture()
def supervised(own_redis, tmp_path) -> Iterator[Service]:
    data = tmp_path / "svc"
    data.mkdir()
    with running_service(own_redis.url, data, concurrency=1,
                         extra_env=SUPERVISION) as svc:
        yield svc


def _long_select(svc: Service, c: httpx.Client, tmp_path: Path, max_seq_length: int) -> str:
    """A select job with ~3,000 distinct texts (a chord of a dozen chunk tasks), caught
    while embedding."""
    rows = varied_rows(read_rows(ALPACA_SAMPLE, 500), 3)
    return svc.select_while_embedding(c, write_jsonl(tmp_path / "d.jsonl.gz", rows, gz=True),
                                      max_seq_length=max_seq_length)


def test_a_job_whose_worker_is_killed_finishes_after_a_new_worker_starts(supervised,
                                                                         tmp_path):
    c = supervised.client()
    job_id = _long_select(supervised, c, tmp_path, 64)
    supervised.kill_worker()
    t_kill = time.monotonic()
    doc = c.get(f"/v1/jobs/{job_id}").json()
    assert doc["status"] == "running" and doc["waiting_for_worker"] is None
    # no worker serves the queue any more: the job says so, with since when
    while (waiting := c.get(f"/v1/jobs/{job_id}").json()["waiting_for_worker"]) is None:
        assert time.monotonic() - t_kill < 30, "the job never said it waits for a worker"
        time.sleep(0.5)
    assert waiting["queue"] == "cpu" and waiting["since"] <= time.time()
    assert c.get("/readyz").json()["checks"]["queues"]["cpu"]["workers"] == []
    supervised.start_worker()
    doc = supervised.wait_job(c, job_id, timeout=RECOVERY_BOUND_S)
    took = time.monotonic() - t_kill
    assert doc["waiting_for_worker"] is None
    assert doc["status"] == "succeeded", (doc.get("error"), supervised.tail("worker", 30))
    assert doc["result"]["rows_selected"] == 75
    assert doc["progress"]["done"] <= doc["progress"]["total"]
    assert doc["attempts"] == 1  # sent again once, by the supervisor
    print(f"killed worker: job finished {took:.0f} s after the kill")


def test_a_chunk_whose_worker_is_killed_is_sent_again_while_its_siblings_run(own_redis,
                                                                             tmp_path):
    """Two worker processes share a job's embedding chunks; one is SIGKILLed mid-chunk
    and never comes back. The supervisor sends that chunk again alone, once its beat is
    ``stale`` old, while the other worker's chunks still beat, and the survivor finishes
    the job by itself."""
    stale, every = float(SUPERVISION["ISA_STALE_AFTER_S"]), \
        float(SUPERVISION["ISA_SUPERVISE_EVERY_S"])
    beat = float(SUPERVISION["ISA_HEARTBEAT_INTERVAL_S"])
    data = tmp_path / "svc"
    data.mkdir()
    # 64-text chunks: a few seconds each here, ~13 of them on ~800 distinct texts
    with running_service(own_redis.url, data, concurrency=1,
                         extra_env={**SUPERVISION, "ISA_EMBED_CHUNK_SIZE": "64"}) as svc:
        svc.start_named_worker("survivor", concurrency=1)
        c = svc.client()
        rows = varied_rows(read_rows(ALPACA_SAMPLE, 250), 2)
        job_id = svc.select_while_embedding(
            c, write_jsonl(tmp_path / "d.jsonl.gz", rows, gz=True), max_seq_length=64)
        seen = kill_worker_mid_chunk(svc, c, job_id, timeout=RECOVERY_BOUND_S)
        survivor = next(n for n in seen.workers_at_end if n.startswith("survivor@"))
        doc = seen.job
        assert svc.worker is None and svc.named_workers["survivor"].poll() is None
        assert doc["status"] == "succeeded", (doc.get("error"), svc.tail("survivor", 40))
        # the killed part: beating when the worker died, then sent again, once
        assert seen.killed_part is not None and seen.killed_part in seen.live_at_kill, seen
        assert seen.resend_after_s is not None
        # not before its beat was stale (the last one came at most a beat before the
        # kill), and within a supervision round of that, plus scheduling on 2 busy cores
        assert stale - beat - 0.5 <= seen.resend_after_s <= stale + every + 6, seen
        # ... while a sibling on the other worker still ran and beat
        assert seen.siblings_at_resend and seen.pending_at_resend >= 2, seen
        assert doc["attempts"] == 1  # that one part; the job itself was never resumed
        # the rest of the job ran on the survivor alone: the killed worker's count of
        # finished chunks stayed where it was, and every chunk was finished once
        grew = {n: seen.workers_at_end.get(n, 0) - seen.workers_at_kill.get(n, 0)
                for n in seen.workers_at_end}
        assert grew[survivor] > 0 and all(v == 0 for n, v in grew.items() if n != survivor)
        assert sum(seen.workers_at_end.values()) == seen.parts >= 8, seen
        # progress never moved backwards: within a stage, and no stage came back
        order: list[str] = []
        last: dict[str, int] = {}
        for stage, done, total in seen.polls:
            if not order or order[-1] != stage:
                assert stage not in order, f"{stage} came back: {seen.polls}"
                order.append(stage)
            assert done >= last.get(stage, 0) and done <= total, (stage, done, seen.polls)
            last[stage] = done
        assert order[0] == "embedding" and order[-1] == "done", order
        assert doc["result"]["rows_selected"] == 25  # 5% of 500 rows
        lines = c.get(f"/v1/jobs/{job_id}/result?format=jsonl").text.splitlines()
        assert len(lines) == 25
        print(f"two workers: part {seen.killed_part} sent again {seen.resend_after_s:.1f} s "
              f"after the kill (bound {stale + every:g} s + margin), job succeeded "
              f"{seen.done_after_s:.0f} s after it; {seen.parts} chunks, live at the kill "
              f"{seen.live_at_kill}, beating at the re-send {seen.siblings_at_resend}, "
              f"per worker {seen.workers_at_kill} -> {seen.workers_at_end}")


def test_a_queued_job_whose_message_was_lost_runs_once_a_worker_is_back(supervised,
                                                                         own_redis, tmp_path):
    import redis

    c = supervised.client()
    ds = supervised.wait_dataset(c, supervised.upload(c, write_jsonl(
        tmp_path / "d.jsonl", read_rows(ALPACA_SAMPLE, 40)))["id"])
    supervised.kill_worker()
    job_id = c.post("/v1/jobs", json={"type": "select", "dataset_id": ds["id"],
                                      "method": "random", "budget": {"count": 7}}).json()["id"]
    broker = redis.Redis.from_url(own_redis.url)
    assert job_id.encode() in b"".join(broker.lrange("cpu", 0, -1))
    broker.delete("cpu")  # the message is lost (a purge, a failover losing the last writes)
    supervised.start_worker()
    doc = supervised.wait_job(c, job_id, timeout=120)
    assert doc["status"] == "succeeded" and doc["result"]["rows_selected"] == 7, doc
    assert "no message in the broker" in supervised.tail("worker", 400)


def test_redis_restarting_mid_job_answers_503_then_the_job_finishes(supervised, own_redis,
                                                                     tmp_path):
    c = supervised.client()
    job_id = _long_select(supervised, c, tmp_path, 64)
    own_redis.stop()
    t_down = time.monotonic()
    r = c.get(f"/v1/jobs/{job_id}")
    assert r.status_code == 503, r.text
    assert r.json()["error"]["code"] == "service_unavailable"
    assert int(r.headers["retry-after"]) > 0
    up = c.post("/v1/datasets", files={"file": ("x.jsonl", b'{"prompt":"p","chosen":"a",'
                                                b'"rejected":"b"}\n')})
    assert up.status_code == 503
    assert c.get("/healthz").status_code == 200  # the process itself is up
    time.sleep(3)
    own_redis.start()
    doc = supervised.wait_job(c, job_id, timeout=RECOVERY_BOUND_S)
    took = time.monotonic() - t_down
    # the job ends, with a result or a clear reason, never stays running
    assert doc["status"] in ("succeeded", "failed"), doc
    if doc["status"] == "failed":
        assert doc["error"]["code"] != "internal_error", doc
    else:
        assert doc["result"]["rows_selected"] == 75
    # the upload refused during the outage left no file behind
    uploads = list((supervised.data_dir / "artifacts" / "datasets").iterdir())
    assert len(uploads) == 1  # the job's own data set only
    print(f"redis restart: job {doc['status']} {took:.0f} s after Redis went down")


def test_metrics_answer_only_with_their_key_when_one_is_set(supervised):
    c = supervised.client(None)
    assert c.get("/metrics").status_code == 401
    wrong = c.get("/metrics", headers={"Authorization": "Bearer key-a"})  # an API key
    assert wrong.status_code == 401
    ok = c.get("/metrics", headers={"Authorization": "Bearer scrape-me"})
    assert ok.status_code == 200 and "isa_jobs" in ok.text


def test_tenants_hit_their_quotas_with_429(supervised, tmp_path):
    c = supervised.client()
    small = write_jsonl(tmp_path / "s.jsonl", read_rows(ALPACA_SAMPLE, 500))  # ~1.7 MB
    first = supervised.wait_dataset(c, supervised.upload(c, small)["id"])
    supervised.upload(c, small)
    third = c.post("/v1/datasets", files={"file": ("s.jsonl", small.read_bytes())})
    assert third.status_code == 429, third.text
    assert third.json()["error"]["code"] == "storage_quota_exceeded"
    # the other tenant has its own quota
    assert supervised.client("key-b").post(
        "/v1/datasets", files={"file": ("s.jsonl", small.read_bytes())}).status_code == 201
    # with no worker, jobs stay queued: the third unfinished one is refused
    supervised.kill_worker()
    body = {"type": "select", "dataset_id": first["id"], "method": "random",
            "budget": {"count": 2}}
    queued = [c.post("/v1/jobs", json=body, headers={"Idempotency-Key": f"q-{i}"}
                     ).json()["id"] for i in range(2)]
    over = c.post("/v1/jobs", json=body)
    assert over.status_code == 429 and over.json()["error"]["code"] == "job_quota_exceeded"
    assert int(over.headers["retry-after"]) > 0
    # a client retrying a create whose answer it lost gets its job, quota or not
    replay = c.post("/v1/jobs", json=body, headers={"Idempotency-Key": "q-0"})
    assert (replay.status_code, replay.json()["id"]) == (200, queued[0]), replay.text
    assert c.post(f"/v1/jobs/{queued[0]}/cancel").json()["status"] == "cancelled"
    assert c.post("/v1/jobs", json=body).status_code == 201
    supervised.start_worker()
