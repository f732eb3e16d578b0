"""Listings on the real Redis: per-filter indexes kept in step with status changes, and
cursor pages that return every record exactly once while records are being created."""

from __future__ import annotations

import random
import threading
import uuid

import pytest
import redis

from core.records import DatasetStore, JobStore, decode_cursor, encode_cursor
from tests.conftest import TEST_REDIS_URL


@pytest.fixture()
def client():
    r = redis.Redis.from_url(TEST_REDIS_URL, decode_responses=True)
    prefix = f"isa-list-{uuid.uuid4().hex[:8]}:"
    yield r, prefix
    for key in r.scan_iter(f"{prefix}*"):
        r.delete(key)


def _all_pages(store, tenant, limit, **where):
    seen, after = [], None
    while True:
        page = store.list(tenant, limit=limit, after=after, where=where)
        seen += [d["id"] for d in page.records]
        if page.next_after is None:
            return seen
        after = page.next_after


def test_filters_follow_status_changes(client):
    r, prefix = client
    jobs = JobStore(r, prefix)
    types = ["select", "evaluate", "curve"]
    for i in range(30):
        jobs.create("t", f"j{i:02d}", "queued", {"type": types[i % 3], "request": {}})
    jobs.create("other", "x", "queued", {"type": "select", "request": {}})
    for i in range(0, 30, 2):
        jobs.transition(f"j{i:02d}", "running")
    for i in range(0, 30, 4):
        jobs.transition(f"j{i:02d}", "succeeded")
    jobs.transition("j01", "cancelled")
    docs = {d["id"]: d for d in jobs.list("t", limit=500).records}
    assert len(docs) == 30
    for status in ("queued", "running", "succeeded", "cancelled"):
        for type_ in (None, *types):
            page = jobs.list("t", limit=500, where={"status": status, "type": type_})
            want = {i for i, d in docs.items() if d["status"] == status
                    and (type_ is None or d["type"] == type_)}
            assert {d["id"] for d in page.records} == want and page.count == len(want)
    # quotas read the non-terminal indexes: 14 queued (15 odd less j01) + 7 running
    assert jobs.live_count("t") == 14 + 7 and jobs.live_count("other") == 1
    jobs.delete("j02", "t")
    assert jobs.list("t", limit=500, where={"status": "running"}).count == 6
    assert jobs.list("t", limit=500, where={"type": "curve"}).count == 9  # j02 was a curve


def test_cursor_pages_see_every_record_once_while_others_are_created(client):
    r, prefix = client
    datasets = DatasetStore(r, prefix)
    for i in range(137):
        datasets.create("t", f"d{i:03d}", "uploaded", {"size_bytes": 1})
    before = {f"d{i:03d}" for i in range(137)}
    stop = threading.Event()

    def create_more() -> None:
        n = 0
        while not stop.is_set():
            datasets.create("t", f"new{n:05d}", "uploaded", {"size_bytes": 1})
            n += 1

    writer = threading.Thread(target=create_more)
    writer.start()
    try:
        seen = _all_pages(datasets, "t", limit=7)
    finally:
        stop.set()
        writer.join()
    assert len(seen) == len(set(seen)), "a record came twice"
    # every record that existed when paging began (offset pages would repeat records here
    # as new ones push the old ones down); new ones only ahead of the old ones, newest
    # first: those made before the first page was read (the writer may make several
    # before it is), never one made once the pages had reached the old records
    assert before <= set(seen)
    first_old = next(i for i, rid in enumerate(seen) if rid in before)
    assert all(rid in before for rid in seen[first_old:])
    assert seen[:first_old] == sorted(seen[:first_old], reverse=True)


def test_ties_on_creation_time_are_neither_lost_nor_repeated(client):
    r, prefix = client
    jobs = JobStore(r, prefix)
    ids = [f"j{uuid.uuid4().hex[:6]}" for _ in range(40)]
    for rid in ids:
        jobs.create("t", rid, "queued", {"type": "select", "request": {}})
    index = jobs.index_key("t")
    r.zadd(index, {rid: 1000.0 + (k % 3) for k, rid in enumerate(ids)})  # many ties
    for limit in (1, 3, 7, 40):
        assert sorted(_all_pages(jobs, "t", limit)) == sorted(ids)
    order = _all_pages(jobs, "t", 5)
    assert order == [rid for rid, _ in r.zrevrange(index, 0, -1, withscores=True)]


def test_cursor_round_trip_and_garbage():
    for score in (0.0, 1732492800.123456, random.random() * 1e9):
        assert decode_cursor(encode_cursor(score, "job_abc")) == (score, "job_abc")
    from core.records import InvalidCursor
    for bad in ("", "%%%", encode_cursor(1.0, "x")[:-3] + "!!", "bm9waXBl"):
        with pytest.raises(InvalidCursor):
            decode_cursor(bad)


def test_indexes_are_built_for_records_written_before_them(client):
    r, prefix = client
    jobs = JobStore(r, prefix)
    # as an older version wrote them: the hash and the tenant's main index only
    for i, status in enumerate(["queued", "succeeded", "failed"]):
        r.hset(jobs.key(f"old{i}"), mapping={"id": f"old{i}", "tenant": "t", "type": "select",
                                              "status": status, "created_at": 10 + i,
                                              "updated_at": 10 + i, "request": "{}"})
        r.zadd(jobs.index_key("t"), {f"old{i}": 10 + i})
    assert jobs.list("t", where={"status": "failed"}).count == 0
    assert jobs.ensure_indexes() == 3
    assert [d["id"] for d in jobs.list("t", where={"status": "failed"}).records] == ["old2"]
    assert jobs.list("t", where={"type": "select"}).count == 3
    assert jobs.live_count("t") == 1
    assert jobs.ensure_indexes() == 0  # once


def test_the_event_loops_page_is_the_stores(client):
    """AsyncJobReader.page (the listing route's read for an offset, on the pipelined
    client) gives RecordStore.list's page: records, count and cursor, filtered or not, at
    every offset, and an empty page past the end."""
    import asyncio

    from core.records import AsyncJobReader
    from core.redis_pipelined import PipelinedRedis

    r, prefix = client
    jobs = JobStore(r, prefix)
    for i in range(23):
        jobs.create("t", f"j{i:02d}", "queued", {"type": ("select", "curve")[i % 2],
                                                 "request": {"n": i},
                                                 "metadata": {"team": f"t{i % 3}"}})
        if i % 3 == 0:
            jobs.transition(f"j{i:02d}", "running")
    reader = AsyncJobReader(PipelinedRedis(TEST_REDIS_URL), jobs)
    cases = [(limit, offset, where) for limit in (1, 5, 23, 50) for offset in (0, 4, 22, 30)
             for where in ({}, {"status": "running"}, {"type": "curve", "status": "queued"},
                           {"metadata": ("team", "t1")})]

    async def pages():
        return [await reader.page("t", limit=limit, offset=offset, where=where)
                for limit, offset, where in cases]

    for (limit, offset, where), got in zip(cases, asyncio.run(pages()), strict=True):
        want = jobs.list("t", limit=limit, offset=offset, where=where)
        assert got == want, (limit, offset, where)
    assert sum(bool(p.records) for p in asyncio.run(pages())) > len(cases) // 2
