"""The supervisor's decisions, on the real Redis: stale running work is sent again, then
failed with a reason; a dead worker's cancel is completed; live work is left alone."""

from __future__ import annotations

import time

from celery.exceptions import SoftTimeLimitExceeded

from core.artifacts import Keys
from core.records import now
from tests.workers.conftest import add_job
from workers.lifecycle import guard, load
from workers.supervisor import heartbeat, supervise_once


def _running(ctx, **extra) -> str:
    job_id = add_job(ctx, {"type": "select", "dataset_id": "ds_x", "method": "random",
                           "budget": {"count": 1}})
    assert ctx.jobs.transition(job_id, "running", started_at=now(), **extra)[0]
    return job_id


def _age(ctx, job_id: str, seconds: float) -> None:
    ctx.redis.zadd(ctx.jobs.live_key(), {job_id: now() - seconds})


def test_stale_running_work_is_sent_again_then_failed(worker_ctx, monkeypatch):
    sent: list[tuple] = []
    monkeypatch.setattr("workers.supervisor.celery_app.send_task",
                        lambda name, args, queue, kwargs=None: sent.append((name, args, queue,
                                                                           kwargs)))
    job_id = _running(worker_ctx)
    limit = worker_ctx.settings.max_attempts
    for attempt in range(1, limit):
        _age(worker_ctx, job_id, worker_ctx.settings.stale_after_s + 1)
        assert supervise_once(worker_ctx)["resent"] == [job_id]
        assert sent[-1][:2] == ("isa.select", (job_id,))
        assert sent[-1][3] == {"resume": True}  # it may take over the running job
        assert worker_ctx.jobs.get(job_id)["attempts"] == attempt
    _age(worker_ctx, job_id, worker_ctx.settings.stale_after_s + 1)
    assert supervise_once(worker_ctx)["failed"] == [job_id]
    job = worker_ctx.jobs.get(job_id)
    assert job["status"] == "failed" and job["error"]["code"] == "worker_lost"
    assert job_id not in worker_ctx.redis.zrange(worker_ctx.jobs.live_key(), 0, -1)


def test_live_work_and_cancels_of_dead_workers(worker_ctx, monkeypatch):
    monkeypatch.setattr("workers.supervisor.celery_app.send_task", lambda *a, **k: None)
    alive = _running(worker_ctx)
    with heartbeat(worker_ctx.jobs, alive, 0.05):
        time.sleep(0.2)
        acted = supervise_once(worker_ctx)
    assert alive not in acted["resent"]
    dying = _running(worker_ctx)
    worker_ctx.jobs.transition(dying, "cancelling")
    _age(worker_ctx, dying, worker_ctx.settings.stale_after_s + 1)
    assert supervise_once(worker_ctx)["cancelled"] == [dying]
    assert worker_ctx.jobs.get(dying)["status"] == "cancelled"


def test_the_guard_maps_time_limits_and_cancels(worker_ctx):
    job_id = _running(worker_ctx)

    def too_slow(job) -> None:  # noqa: ANN001
        raise SoftTimeLimitExceeded

    guard(load(worker_ctx, job_id), too_slow)
    job = worker_ctx.jobs.get(job_id)
    assert job["status"] == "failed" and job["error"]["code"] == "time_limit_exceeded"

    cancelled = _running(worker_ctx)
    key = Keys.job_file(cancelled, "subset.jsonl")

    def half_written(job) -> None:  # noqa: ANN001
        with worker_ctx.artifacts.open_write(key) as fh:
            fh.write(b"{}\n")
        worker_ctx.jobs.transition(job.id, "cancelling")
        job.check_cancel()

    guard(load(worker_ctx, cancelled), half_written)
    assert worker_ctx.jobs.get(cancelled)["status"] == "cancelled"
    assert not worker_ctx.artifacts.exists(key)  # no result file left behind


def test_queued_work_whose_message_was_lost_is_sent_again(worker_ctx, monkeypatch):
    from celery import Celery

    from tests.conftest import TEST_REDIS_URL

    sent: list[tuple] = []
    monkeypatch.setattr("workers.supervisor.celery_app.send_task",
                        lambda name, args, queue, kwargs=None: sent.append((name, args,
                                                                           queue)))
    queue = f"q-{worker_ctx.settings.key_prefix.strip(':')}"  # this test's own queue
    monkeypatch.setattr(worker_ctx.settings, "default_queue", queue)
    waiting, lost = (add_job(worker_ctx, {"type": "select", "dataset_id": "ds_x",
                                          "method": "random", "budget": {"count": 1}})
                     for _ in range(2))
    broker = Celery(broker=TEST_REDIS_URL)  # a real message, as the gateway sends it
    broker.send_task("isa.select", args=(waiting,), queue=queue)
    after = worker_ctx.settings.requeue_lost_after_s + 1
    try:
        # younger than requeue_lost_after_s: neither is looked at
        assert supervise_once(worker_ctx)["requeued"] == []
        for job_id in (waiting, lost):
            _age(worker_ctx, job_id, after)
        assert waiting in worker_ctx.redis.lindex(queue, 0)
        # missing once is not lost yet (a worker may be between taking and recording it)
        assert supervise_once(worker_ctx)["requeued"] == []
        assert supervise_once(worker_ctx)["requeued"] == [lost]  # missing twice
        assert sent == [("isa.select", (lost,), queue)]
        # sent again once a period, not every round; the one whose message waits, never
        assert supervise_once(worker_ctx)["requeued"] == []
        # the waiting one's message taken by a worker (unacknowledged): still there
        raw = worker_ctx.redis.rpop(queue)
        worker_ctx.redis.hset("unacked", f"tag-{waiting}", f'[{raw}, "", "{queue}"]')
        _age(worker_ctx, waiting, after)
        assert supervise_once(worker_ctx)["requeued"] == []
        assert supervise_once(worker_ctx)["requeued"] == []
        worker_ctx.redis.hdel("unacked", f"tag-{waiting}")  # ... and then lost
        _age(worker_ctx, waiting, after)
        assert supervise_once(worker_ctx)["requeued"] == []
        assert supervise_once(worker_ctx)["requeued"] == [waiting]
    finally:
        worker_ctx.redis.delete(queue)
        worker_ctx.redis.hdel("unacked", f"tag-{waiting}")


def test_a_duplicate_message_never_claims_running_work(worker_ctx):
    from types import SimpleNamespace

    from workers.lifecycle import claim

    def task(**delivery_info):  # noqa: ANN202
        return SimpleNamespace(request=SimpleNamespace(delivery_info=delivery_info))

    job_id = add_job(worker_ctx, {"type": "select", "dataset_id": "ds_x", "method": "random",
                                  "budget": {"count": 1}})
    assert claim(job_id, task()) is not None  # the first delivery claims the queued job
    worker_ctx.jobs.beat(job_id)
    assert claim(job_id, task()) is None  # a second copy (one sent again) leaves it
    assert claim(job_id, task(redelivered=True)) is None  # its worker is alive (beating)
    _age(worker_ctx, job_id, worker_ctx.settings.stale_after_s + 1)
    assert claim(job_id, task(redelivered=True)) is not None  # its worker died: resume
    worker_ctx.jobs.beat(job_id)
    assert claim(job_id, task(), resume=True) is not None  # the supervisor's resend


def test_a_broker_outage_does_not_wear_a_jobs_attempts_down(worker_ctx, monkeypatch):
    import kombu.exceptions

    broker = {"up": False}
    sent: list[tuple] = []

    def send_task(name, args, queue, kwargs=None):  # noqa: ANN202
        if not broker["up"]:
            raise kombu.exceptions.OperationalError("connection refused")
        sent.append((name, args))

    monkeypatch.setattr("workers.supervisor.celery_app.send_task", send_task)
    job_id = _running(worker_ctx)
    # many rounds while the broker is away: each fails to send, none counts
    for _ in range(worker_ctx.settings.max_attempts + 2):
        _age(worker_ctx, job_id, worker_ctx.settings.stale_after_s + 1)
        acted = supervise_once(worker_ctx)
        assert acted["resent"] == [] and acted["failed"] == []
    job = worker_ctx.jobs.get(job_id)
    assert job["status"] == "running" and job["attempts"] == 0 and sent == []
    broker["up"] = True  # back: the next round sends it, as its first re-send
    _age(worker_ctx, job_id, worker_ctx.settings.stale_after_s + 1)
    assert supervise_once(worker_ctx)["resent"] == [job_id]
    assert sent == [("isa.select", (job_id,))]
    assert worker_ctx.jobs.get(job_id)["attempts"] == 1
    assert [e["type"] for e in worker_ctx.jobs.events(job_id)[0]] == ["status", "resent"]
