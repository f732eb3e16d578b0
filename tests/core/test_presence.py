"""Which queues a live worker serves, on the real Redis: what a job and the dashboard say
when none does (waiting_for_worker)."""

from __future__ import annotations

import asyncio
import time

import pytest
import redis
import redis.asyncio as aioredis

from core import presence
from tests.conftest import TEST_REDIS_URL


def _job(status: str, queue: str | None = "cpu") -> dict:
    return {"id": "job_x", "type": "select", "status": status, "stage": "embedding",
            "created_at": time.time() - 300, "queue": queue,
            "request": {"dataset_id": "ds_x", "method": "isa", "budget": {"count": 5}}}


def test_a_job_waits_from_its_last_workers_last_sign_until_one_announces(prefix):
    r = redis.Redis.from_url(TEST_REDIS_URL, decode_responses=True)  # as the services'
    job = _job("running")
    # never a worker: waiting since the job was created
    assert presence.job_waiting_since(r, prefix, job, "cpu", 60) == job["created_at"]
    presence.announce(r, prefix, "w1@host", ["cpu", "gpu"], ttl_s=10)
    assert presence.job_waiting_since(r, prefix, job, "cpu", 60) is None
    assert presence.live_workers(r, prefix, "gpu", 60) == ["w1@host"]
    # a record without a queue is on the default one
    assert presence.job_waiting_since(r, prefix, _job("queued", None), "cpu", 60) is None
    assert presence.job_waiting_since(r, prefix, _job("queued", None), "align", 60) is not None
    # a worker silent for longer than the window is no longer live: since its last sign
    r.zadd(presence.queue_key(prefix, "cpu"), {"w1@host": time.time() - 120})
    assert presence.job_waiting_since(r, prefix, job, "cpu", 60) == pytest.approx(
        time.time() - 120, abs=2)
    presence.withdraw(r, prefix, "w1@host", ["cpu", "gpu"])
    assert presence.live_workers(r, prefix, "gpu", 60) == []
    # a finished job waits for nothing
    assert presence.job_waiting_since(r, prefix, _job("succeeded"), "cpu", 60) is None


def test_the_gateways_cached_view_agrees_with_the_workers_announcements(prefix):
    async def check() -> None:
        client = aioredis.Redis.from_url(TEST_REDIS_URL)
        view = presence.AsyncPresence(client, prefix, within_s=60)
        assert await view.waiting_since("cpu", 100.0) == 100.0
        presence.announce(redis.Redis.from_url(TEST_REDIS_URL), prefix, "w1", ["cpu"], 10)
        # read at most every two seconds: the announcement shows on the next read
        assert await view.waiting_since("cpu", 100.0) == 100.0
        view._seen.clear()
        assert await view.waiting_since("cpu", 100.0) is None
        await client.aclose()

    asyncio.run(check())


def test_the_job_page_says_it_waits_for_a_worker():
    from app.ui.render import html_page, job_view

    job = _job("running", "gpu")
    common = {"tenant": "t", "files": [], "summary": {}, "plot": False, "subset": None,
              "refresh": 2, "can_cancel": True}
    html = html_page("job.html", job=job_view(job, time.time() - 90), **common).body.decode()
    assert 'id="waiting-for-worker"' in html and "<b>gpu</b>" in html
    html = html_page("job.html", job=job_view(job, None), **common).body.decode()
    assert "waiting-for-worker" not in html
