"""The fan-out barrier on the real Redis: the follow-up is sent once, by the last part of
the current generation; a part that stops beating is sent again alone (counted in the
job's attempts), then fails its job; late copies and older generations count for
nothing; a resumed job's progress never moves backwards."""

from __future__ import annotations

import pytest

from core.records import now
from tests.workers.conftest import add_job
from workers import fanout
from workers.lifecycle import JobRun, ProgressHold
from workers.supervisor import supervise_once


@pytest.fixture()
def sent(monkeypatch) -> list[tuple]:
    calls: list[tuple] = []

    def send_task(name, args=(), queue=None, kwargs=None):
        calls.append((name, tuple(args), queue))

    monkeypatch.setattr("workers.fanout.celery_app.send_task", send_task)
    monkeypatch.setattr("workers.supervisor.celery_app.send_task", send_task)
    return calls


def _running(ctx) -> str:
    job_id = add_job(ctx, {"type": "select", "dataset_id": "ds_x", "method": "random",
                           "budget": {"count": 1}})
    assert ctx.jobs.transition(job_id, "running", started_at=now())[0]
    return job_id


def test_the_last_part_sends_the_follow_up_once(worker_ctx, sent):
    jobs, job_id = worker_ctx.jobs, _running(worker_ctx)
    gen = fanout.start(jobs, job_id, "isa.embed_chunk", [(0,), (1,), (2,)],
                       "isa.finish_select", (job_id,), "cpu")
    assert [s[1] for s in sent] == [(job_id, gen, i, i) for i in range(3)]
    sent.clear()
    fanout.finish(jobs, job_id, gen, 1)
    fanout.finish(jobs, job_id, gen, 1)  # a second copy of the same part
    fanout.finish(jobs, job_id, gen, 0)
    assert sent == [] and fanout.pending(jobs, job_id) == 1
    fanout.finish(jobs, job_id, gen, 2)
    fanout.finish(jobs, job_id, gen, 2)
    assert sent == [("isa.finish_select", (job_id,), "cpu")]
    assert not fanout.is_pending(jobs, job_id, gen, 2)


def test_an_older_generation_counts_for_nothing(worker_ctx, sent):
    jobs, job_id = worker_ctx.jobs, _running(worker_ctx)
    old = fanout.start(jobs, job_id, "isa.embed_chunk", [(0,), (1,)], "isa.finish_select",
                       (job_id,), "cpu")
    new = fanout.start(jobs, job_id, "isa.embed_chunk", [(0,)], "isa.finish_select",
                       (job_id,), "cpu")
    assert new == old + 1
    sent.clear()
    fanout.finish(jobs, job_id, old, 0)
    fanout.finish(jobs, job_id, old, 1)
    assert sent == [] and not fanout.is_pending(jobs, job_id, old, 1)
    fanout.finish(jobs, job_id, new, 0)
    assert sent == [("isa.finish_select", (job_id,), "cpu")]


def _two_shards(ctx) -> tuple[str, int]:
    """A running job whose scoring is fanned out as two shards: (job id, generation)."""
    job_id = _running(ctx)
    gen = fanout.start(ctx.jobs, job_id, "isa.score_shard", [(0, 0, 10, 5, "enc"),
                                                             (1, 10, 20, 5, "enc")],
                       "isa.finish_scoring", (job_id, 2, 0.5), "cpu")
    return job_id, gen


def test_a_part_that_stops_beating_is_sent_again_alone_then_fails_its_job(worker_ctx, sent):
    jobs, s = worker_ctx.jobs, worker_ctx.settings
    job_id, gen = _two_shards(worker_ctx)
    sent.clear()
    stale = now() - s.stale_after_s - 1
    for index in (0, 1):
        fanout.beat(jobs, job_id, gen, index)
    jobs.beat(job_id)  # a sibling keeps the job itself alive
    worker_ctx.redis.zadd(fanout.live_key(jobs), {fanout.member(job_id, gen, 1): stale})
    assert supervise_once(worker_ctx)["parts_resent"] == [f"{job_id}:1"]
    assert sent == [("isa.score_shard", (job_id, gen, 1, 1, 10, 20, 5, "enc"), "cpu")]
    assert jobs.get(job_id)["attempts"] == 1
    assert supervise_once(worker_ctx)["parts_resent"] == []  # unwatched until it starts
    for _ in range(s.max_attempts - 2):
        worker_ctx.redis.zadd(fanout.live_key(jobs), {fanout.member(job_id, gen, 1): stale})
        assert supervise_once(worker_ctx)["parts_resent"] == [f"{job_id}:1"]
    worker_ctx.redis.zadd(fanout.live_key(jobs), {fanout.member(job_id, gen, 1): stale})
    assert supervise_once(worker_ctx)["failed"] == [job_id]
    job = jobs.get(job_id)
    assert job["status"] == "failed" and job["error"]["code"] == "worker_lost"
    assert job["error"]["details"]["part"] == 1


def test_a_finished_part_is_not_sent_again(worker_ctx, sent):
    jobs, s = worker_ctx.jobs, worker_ctx.settings
    job_id = _running(worker_ctx)
    gen = fanout.start(jobs, job_id, "isa.embed_chunk", [(0,), (1,)], "isa.finish_select",
                       (job_id,), "cpu")
    fanout.finish(jobs, job_id, gen, 0)
    # a copy of part 0 that beat once and died after the original finished
    worker_ctx.redis.zadd(fanout.live_key(jobs), {fanout.member(job_id, gen, 0):
                                                  now() - s.stale_after_s - 1})
    sent.clear()
    assert supervise_once(worker_ctx)["parts_resent"] == []
    assert sent == [] and worker_ctx.redis.zcard(fanout.live_key(jobs)) == 0


def test_a_stale_job_whose_parts_wait_in_the_broker_is_left_alone(worker_ctx, sent):
    import uuid

    jobs, s = worker_ctx.jobs, worker_ctx.settings
    job_id = _running(worker_ctx)
    queue = f"test-queue-{uuid.uuid4().hex[:8]}"  # no live worker consumes it
    jobs.update(job_id, queue=queue)
    fanout.start(jobs, job_id, "isa.embed_chunk", [(0,)], "isa.finish_select", (job_id,),
                 queue)
    worker_ctx.redis.zadd(jobs.live_key(), {job_id: now() - s.stale_after_s - 1})
    # the part's message waits in the queue (a busy worker will reach it)
    worker_ctx.redis.rpush(queue, f'{{"headers": {{"argsrepr": "(\'{job_id}\', 1, 0, 0)"}}}}')
    try:
        acted = supervise_once(worker_ctx)
        assert acted["resent"] == [] and jobs.get(job_id).get("attempts", 0) == 0
        worker_ctx.redis.delete(queue)  # the message was lost: resume the job
        worker_ctx.redis.zadd(jobs.live_key(), {job_id: now() - s.stale_after_s - 1})
        assert supervise_once(worker_ctx)["resent"] == [job_id]
    finally:
        worker_ctx.redis.delete(queue)


def test_a_resumed_delivery_shows_no_progress_behind_the_lost_one(worker_ctx):
    jobs, job_id = worker_ctx.jobs, _running(worker_ctx)
    for stage, done, total in (("reading", 100, 100), ("embedding", 0, 400),
                               ("embedding", 240, 400)):
        jobs.set_progress(job_id, stage, done, total)
    record = jobs.get(job_id)
    hold = ProgressHold.of(worker_ctx, record)
    assert hold is not None and hold.stage == "embedding" and hold.fraction == 0.6
    run = JobRun(worker_ctx, job_id, "t1", None, record, hold)
    for stage, done, total in (("reading", 0, 100), ("reading", 100, 100),
                               ("embedding", 0, 160), ("embedding", 40, 160)):
        run.stage(stage, done, total)
        doc = jobs.get(job_id)
        assert (doc["stage"], doc["progress_done"], doc["progress_total"]) == \
            ("embedding", 240, 400)
    run.stage("embedding", 150, 160)  # further along than the lost delivery: shown
    assert jobs.get(job_id)["progress_done"] == 150 and run.hold is None
    run.stage("reading", 1, 2)  # the hold is over: a later report is shown as it comes
    assert jobs.get(job_id)["stage"] == "reading"


def test_a_resumed_delivery_that_skips_the_lost_stage_shows_the_next_one(worker_ctx):
    jobs, job_id = worker_ctx.jobs, _running(worker_ctx)
    jobs.set_progress(job_id, "reading", 10, 10)
    jobs.set_progress(job_id, "embedding", 5, 10)
    record = jobs.get(job_id)
    run = JobRun(worker_ctx, job_id, "t1", None, record, ProgressHold.of(worker_ctx, record))
    run.stage("reading", 10, 10)
    assert jobs.get(job_id)["stage"] == "embedding"
    run.stage("selecting", 0, 1)  # all cached now: embedding never comes again
    assert jobs.get(job_id)["stage"] == "selecting"
    assert ProgressHold.of(worker_ctx, {**record, "status": "queued"}) is None


def test_a_lost_part_waits_out_a_broker_outage_uncounted(worker_ctx, sent, monkeypatch):
    import kombu.exceptions

    jobs, s = worker_ctx.jobs, worker_ctx.settings
    job_id, gen = _two_shards(worker_ctx)
    sent.clear()

    def down(*_a, **_k):  # noqa: ANN202
        raise kombu.exceptions.OperationalError("connection refused")

    monkeypatch.setattr("workers.fanout.celery_app.send_task", down)
    stale = now() - s.stale_after_s - 1
    for _ in range(s.max_attempts + 2):
        jobs.beat(job_id)
        worker_ctx.redis.zadd(fanout.live_key(jobs), {fanout.member(job_id, gen, 1): stale})
        acted = supervise_once(worker_ctx)
        assert acted["parts_resent"] == [] and acted["failed"] == []
        # still watched: the next round tries again
        assert worker_ctx.redis.zscore(fanout.live_key(jobs), fanout.member(job_id, gen, 1))
    assert jobs.get(job_id)["status"] == "running" and not jobs.get(job_id).get("attempts")
    monkeypatch.setattr("workers.fanout.celery_app.send_task",
                        lambda name, args=(), queue=None, kwargs=None:
                        sent.append((name, tuple(args), queue)))
    jobs.beat(job_id)
    assert supervise_once(worker_ctx)["parts_resent"] == [f"{job_id}:1"]
    assert sent == [("isa.score_shard", (job_id, gen, 1, 1, 10, 20, 5, "enc"), "cpu")]
    assert jobs.get(job_id)["attempts"] == 1


def test_a_part_held_long_by_a_worker_that_never_started_it_does_not_hold_the_job(
        worker_ctx, sent):
    """A worker killed between taking a part's message and its first beat leaves the
    message unacknowledged until Redis' 12 h visibility timeout: once it has been held
    longer than a beat's staleness with no part beating, the job is resumed."""
    import uuid

    jobs, s = worker_ctx.jobs, worker_ctx.settings
    job_id = _running(worker_ctx)
    queue = f"test-queue-{uuid.uuid4().hex[:8]}"
    jobs.update(job_id, queue=queue)
    fanout.start(jobs, job_id, "isa.embed_chunk", [(0,)], "isa.finish_select", (job_id,),
                 queue)
    sent.clear()
    tag = f"tag-{uuid.uuid4().hex[:8]}"
    raw = f'[{{"headers": {{"argsrepr": "(\'{job_id}\', 1, 0, 0)"}}}}, "", "{queue}"]'
    worker_ctx.redis.hset("unacked", tag, raw)
    try:
        # taken a moment ago: its worker may be starting it
        worker_ctx.redis.zadd("unacked_index", {tag: now() - 1})
        worker_ctx.redis.zadd(jobs.live_key(), {job_id: now() - s.stale_after_s - 1})
        assert supervise_once(worker_ctx)["resent"] == []
        # held longer than a beat's staleness and never started: its worker is gone
        worker_ctx.redis.zadd("unacked_index", {tag: now() - s.stale_after_s - 1})
        worker_ctx.redis.zadd(jobs.live_key(), {job_id: now() - s.stale_after_s - 1})
        assert supervise_once(worker_ctx)["resent"] == [job_id]
        assert sent[-1][:2] == ("isa.select", (job_id,))
    finally:
        worker_ctx.redis.hdel("unacked", tag)
        worker_ctx.redis.zrem("unacked_index", tag)
