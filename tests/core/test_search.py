"""Data sets found by part of their file name (core.search) on the real Redis: any case,
with the status filter, paged by cursor (ties on the creation time included) and by
offset, every match once, newest first; other tenants' records never."""

from __future__ import annotations

import uuid

import pytest
import redis

from core import search
from core.records import DatasetStore, InvalidCursor
from core.search import search_page
from tests.conftest import TEST_REDIS_URL


@pytest.fixture()
def datasets():
    r = redis.Redis.from_url(TEST_REDIS_URL, decode_responses=True)
    prefix = f"isa-search-{uuid.uuid4().hex[:8]}:"
    yield DatasetStore(r, prefix)
    for key in r.scan_iter(f"{prefix}*"):
        r.delete(key)


def _make(store, tenant, rid, name, status="ready", at=None):
    store.create(tenant, rid, "uploaded", {"filename": name, "size_bytes": 1, "sha256": "x",
                                           "options": {}})
    if status != "uploaded":
        store.transition(rid, "validating")
        store.transition(rid, status)
    if at is not None:  # a creation time of our choosing, in every index it is in
        for key in store._index_keys(tenant, store.get(rid)):
            store.r.zadd(key, {rid: at}, xx=True)


def _pages(store, tenant, text, limit, **where):
    seen, after, counts = [], None, set()
    while True:
        page = search_page(store, tenant, text, limit=limit, after=after, where=where)
        assert len(page.records) <= limit
        seen += [d["id"] for d in page.records]
        counts.add(page.count)
        if page.next_after is None:
            return seen, counts
        after = page.next_after


def test_search_by_part_of_the_name_with_status_and_cursor_pages(datasets, monkeypatch):
    monkeypatch.setattr(search, "BATCH", 4)  # several round trips of names
    names = {}
    for i in range(23):
        # every third one matches; matches share their creation time in twos (cursor ties)
        name = f"Prefs-{i:02d}.JSONL" if i % 3 == 0 else f"other-{i:02d}.csv"
        status = "invalid" if i % 2 else "ready"
        _make(datasets, "t", f"ds_{i:02d}", name, status, at=1000.0 + i // 6)
        names[f"ds_{i:02d}"] = (name, status)
    _make(datasets, "u", "ds_theirs", "prefs-theirs.jsonl")
    # newest first; within one creation time, the larger id first (as every listing)
    order = sorted(names, key=lambda rid: (int(rid[3:]) // 6, rid), reverse=True)
    want = [rid for rid in order if "prefs" in names[rid][0].lower()]
    assert len(want) == 8

    for limit in (1, 2, 3, 50):
        seen, counts = _pages(datasets, "t", "pReFs", limit)
        assert seen == want and counts == {8}, limit
    ready = [rid for rid in want if names[rid][1] == "ready"]
    assert ready and len(ready) < len(want)
    seen, counts = _pages(datasets, "t", "PREFS", 2, status="ready")
    assert seen == ready and counts == {len(ready)}
    # a part inside the name, not only its start; nothing matching: nothing, count 0
    assert _pages(datasets, "t", "s-0", 3)[0] == [r for r in want if r < "ds_10"]
    empty = search_page(datasets, "t", "nothing-like-it", limit=5)
    assert (empty.records, empty.count, empty.next_after) == ([], 0, None)
    # by offset too
    page = search_page(datasets, "t", "prefs", limit=3, offset=2)
    assert [d["id"] for d in page.records] == want[2:5] and page.next_after
    # the records themselves, decoded as the listing's
    assert page.records[0]["options"] == {} and page.records[0]["size_bytes"] == 1
    # another tenant's data sets are never found
    assert search_page(datasets, "u", "prefs", limit=5).count == 1
    assert "ds_theirs" not in _pages(datasets, "t", "theirs", 5)[0]
    with pytest.raises(InvalidCursor):
        search_page(datasets, "t", "prefs", after="not-a-cursor")


def test_a_deleted_data_set_is_not_found(datasets):
    for i in range(4):
        _make(datasets, "t", f"ds_{i}", f"run-{i}.jsonl")
    datasets.delete("ds_2", "t")
    page = search_page(datasets, "t", "RUN", limit=10)
    assert [d["id"] for d in page.records] == ["ds_3", "ds_1", "ds_0"] and page.count == 3
