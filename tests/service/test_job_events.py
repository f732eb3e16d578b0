"""A job's events over HTTP, against the real gateway, worker and Redis: a select job's
story from start to end, read in pages and followed with ``after``; the Python client and
the remote CLI read the same."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

from tests.conftest import HH_SAMPLE

FAST_ENCODER = {"name": "sentence", "max_seq_length": 88}  # no other test uses it


def test_a_select_jobs_events_tell_its_story_in_order(service):
    c = service.client()
    ds = service.wait_dataset(c, service.upload(c, HH_SAMPLE)["id"])
    r = c.post("/v1/jobs", json={"type": "select", "dataset_id": ds["id"], "method": "isa",
                                 "budget": {"fraction": 0.05}, "encoder": FAST_ENCODER})
    assert r.status_code == 201, r.text
    job_id = r.json()["id"]
    # followed while it runs, each read starting after the last event seen, until the
    # job's end is among them
    seen, after, deadline = [], None, time.monotonic() + 600
    while not any(e["type"] == "status" and e["data"]["status"] in ("succeeded", "failed")
                  for e in seen):
        assert time.monotonic() < deadline, seen
        page = c.get(f"/v1/jobs/{job_id}/events", params={"limit": 3} | (
            {"after": after} if after else {})).json()
        assert len(page["data"]) <= 3
        seen += page["data"]
        after = page["next_after"]
        if not page["has_more"]:
            time.sleep(0.2)
    whole = c.get(f"/v1/jobs/{job_id}/events", params={"limit": 1000}).json()
    assert not whole["has_more"] and [e["id"] for e in seen] == [e["id"] for e in whole["data"]]
    events = whole["data"]
    assert (events[0]["type"], events[0]["data"]["status"]) == ("status", "running")
    assert (events[-1]["type"], events[-1]["data"]["status"]) == ("status", "succeeded")
    stages = [e["data"]["stage"] for e in events if e["type"] == "stage"]
    assert stages[:2] == ["reading", "embedding"] and "scoring" in stages
    # each tenth of the embedding once, in order, the last at the stage's total (an
    # encoder setting no other test uses: nothing is cached)
    total = next(e["data"]["total"] for e in events
                 if e["type"] == "stage" and e["data"]["stage"] == "embedding")
    tenths = [e["data"]["done"] * 10 // total for e in events
              if e["type"] == "progress" and e["data"]["stage"] == "embedding"]
    assert total > 256 and tenths == sorted(set(tenths)) and tenths[-1] == 10
    assert len(tenths) >= 5
    assert all(e["level"] == "info" for e in events)

    # the Python client and the remote CLI read the same log
    from isa.remote import Client

    with Client(service.base_url, api_key="key-a") as client:
        got = client.job_events(job_id, limit=1000)
        assert [e.id for e in got.data] == [e["id"] for e in events]
        assert [e.id for e in client.iter_job_events(job_id)] == [e["id"] for e in events]
    env = {**os.environ, "ISA_SERVER_URL": service.base_url, "ISA_API_KEY": "key-a"}
    cli = subprocess.run([sys.executable, "-m", "isa", "remote", "events", job_id, "--json",
                          "--follow"], env=env, capture_output=True, text=True, timeout=120)
    assert cli.returncode == 0, cli.stderr
    assert [json.loads(line)["id"] for line in cli.stdout.splitlines()] == \
        [e["id"] for e in events]
    text = subprocess.run([sys.executable, "-m", "isa", "remote", "events", job_id], env=env,
                          capture_output=True, text=True, timeout=120).stdout
    assert text.splitlines()[-1].split()[1:] == ["status", "succeeded"]


def test_events_of_another_tenants_job_or_after_a_bad_id_are_refused(service):
    c = service.client()
    ds = service.wait_dataset(c, service.upload(c, HH_SAMPLE)["id"])
    job = c.post("/v1/jobs", json={"type": "select", "dataset_id": ds["id"],
                                   "method": "random", "budget": {"count": 3}}).json()
    other = service.client("key-other").get(f"/v1/jobs/{job['id']}/events")
    assert other.status_code == 404 and other.json()["error"]["code"] == "job_not_found"
    for after in ("yesterday", "99999999999999999999-0",
                  "18446744073709551615-18446744073709551615"):
        bad = c.get(f"/v1/jobs/{job['id']}/events", params={"after": after})
        assert bad.status_code == 400, (after, bad.text)
        assert bad.json()["error"]["code"] == "invalid_pagination"
        assert json.loads(bad.text)["error"]["details"]["field"] == "after"
    # the largest id Redis takes is an id: nothing after it
    last = c.get(f"/v1/jobs/{job['id']}/events",
                 params={"after": "18446744073709551615-0"}).json()
    assert last["data"] == [] and last["has_more"] is False
