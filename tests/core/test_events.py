"""A job's event log on the real Redis: status changes, new stages and each tenth of a
stage written with the progress itself, read in order with ``after`` and ``has_more``."""

from __future__ import annotations


def _kinds(events: list[dict]) -> list[tuple]:
    return [(e["type"], e["data"].get("status") or e["data"].get("stage"),
             e["data"].get("done")) for e in events]


def test_a_jobs_story_is_its_events_in_order(jobs):
    jobs.create("t", "j1", "queued", {"type": "select", "request": {}})
    jobs.transition("j1", "running")
    jobs.set_progress("j1", "reading", 0, 0)
    jobs.set_progress("j1", "embedding", 0, 100)
    for _ in range(20):
        jobs.add_progress("j1", 5)  # 5 at a time: a milestone every other call
    jobs.add_progress("j1", 5)  # past the total: no second 100%
    jobs.set_progress("j1", "scoring", 3, 10)
    jobs.set_progress("j1", "scoring", 10, 10)
    jobs.add_event("j1", "resent", "part 2 lost its worker; sent again", level="warning",
                   part=2)
    jobs.transition("j1", "failed", error={"code": "worker_lost", "message": "gone"})
    events, more = jobs.events("j1", limit=1000)
    assert not more
    assert _kinds(events) == [
        ("status", "running", None), ("stage", "reading", 0), ("stage", "embedding", 0),
        *[("progress", "embedding", d) for d in range(10, 101, 10)],
        ("stage", "scoring", 3), ("progress", "scoring", 10),
        ("resent", None, None), ("status", "failed", None)]
    last = events[-1]
    assert last["level"] == "error" and last["data"]["code"] == "worker_lost"
    assert last["message"] == "failed: gone" and last["data"]["previous"] == "running"
    assert events[-2]["level"] == "warning" and events[-2]["data"]["part"] == 2
    assert [e["created_at"] for e in events] == sorted(e["created_at"] for e in events)


def test_events_page_with_after_and_has_more(jobs):
    jobs.create("t", "j2", "queued", {"type": "select", "request": {}})
    jobs.transition("j2", "running")
    jobs.set_progress("j2", "embedding", 0, 10)
    for _ in range(10):
        jobs.add_part_progress("j2", "1:0", jobs.get("j2")["progress_done"] + 1)
    everything, _ = jobs.events("j2", limit=1000)
    assert len(everything) == 12  # running, the stage, ten tenths
    seen, after = [], None
    while True:
        page, more = jobs.events("j2", after=after, limit=5)
        seen += page
        if not more:
            break
        after = page[-1]["id"]
    assert [e["id"] for e in seen] == [e["id"] for e in everything]
    # a deleted job's log goes with it; no event is written for a job that is gone
    jobs.delete("j2", "t")
    jobs.add_event("j2", "resent", "late")
    jobs.set_progress("j2", "embedding", 1, 10)
    assert jobs.events("j2") == ([], False)
