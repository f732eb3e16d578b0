"""Webhook events beyond a job's end, on the real service: a tenant that subscribes (PUT
/v1/webhook ``events``) receives ``dataset.ready``, ``dataset.invalid`` and
``job.started`` on its URL, signed like every delivery, while a job's own
``callback_url`` still gets that job's end; a tenant that never chose receives job ends
only; an unknown event type is refused with its own code (HTTP, client, CLI)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest
import redis
from standardwebhooks.webhooks import Webhook

from isa.remote import errors
from isa.remote.client import Client
from isa.remote.contract import JOB_END_EVENTS
from tests.conftest import ALPACA_SAMPLE, HH_SAMPLE, TEST_REDIS_URL, read_rows
from tests.service.test_webhooks import Receiver, _job, _webhook_state

#: seconds to wait, once the deliveries a test expects are in, for one it must not get
#: (each would have been queued before the last one expected)
QUIET_S = 1.5


@pytest.fixture
def receiver():
    r = Receiver()
    yield r
    r.server.shutdown()


def _register(c, **body) -> dict:
    r = c.put("/v1/webhook", json=body)
    assert r.status_code == 200, r.text
    return r.json()


def _invalid_file(tmp_path):
    """Three rows, the third not JSON: ``invalid_json`` at line 3."""
    lines = [json.dumps(r) for r in read_rows(ALPACA_SAMPLE, 3)]
    lines.insert(2, '{"prompt": "p", "chosen": "c"')
    bad = tmp_path / "bad.jsonl"
    bad.write_text("\n".join(lines) + "\n")
    return bad


def _verified(receiver: Receiver, secret: str) -> dict[tuple[str, str], tuple[dict, dict]]:
    """Every delivery by (path, event type), each verified with ``secret``."""
    events = {}
    for path, headers, body in receiver.calls:
        event = Webhook(secret).verify(body, headers)  # raises unless signed right
        assert (path, event["type"]) not in events, receiver.calls  # each once
        events[(path, event["type"])] = (headers, event)
    return events


def test_a_subscribed_tenant_receives_data_set_and_start_events(service, receiver, tmp_path):
    c = service.client("key-subscribed")
    hook = _register(c, url=receiver.url + "/sub",
                     events=["dataset.ready", "job.started", "dataset.invalid", "job.started"])
    try:
        assert hook["events"] == ["dataset.ready", "job.started", "dataset.invalid"]
        assert c.get("/v1/webhook").json()["events"] == hook["events"]
        ds = service.wait_dataset(c, service.upload(c, HH_SAMPLE)["id"])
        assert ds["status"] == "ready"
        # its end goes to its own URL; its start to the tenant's, which chose it
        job = _job(service, c, ds["id"], callback_url=receiver.url + "/own")
        assert job["status"] == "succeeded"
        bad = service.wait_dataset(c, service.upload(c, _invalid_file(tmp_path))["id"])
        assert bad["status"] == "invalid" and bad["error"]["code"] == "invalid_json"
        receiver.wait_for(4)
        time.sleep(QUIET_S)
        events = _verified(receiver, hook["secret"])
        # no job.succeeded on /sub: the tenant did not choose it (nor would a job with
        # its own callback_url send its end there)
        assert sorted(events) == [("/own", "job.succeeded"), ("/sub", "dataset.invalid"),
                                  ("/sub", "dataset.ready"), ("/sub", "job.started")]

        headers, ready = events[("/sub", "dataset.ready")]
        assert headers["webhook-id"] == f"msg_{ds['id']}_ready"
        assert ready["data"] == c.get(f"/v1/datasets/{ds['id']}").json()  # as GET has it
        assert ready["data"]["rows_valid"] == 600 and ready["data"]["error"] is None

        headers, started = events[("/sub", "job.started")]
        assert headers["webhook-id"] == f"msg_{job['id']}_started"
        data = started["data"]
        # the job as it was when it started, though delivered around its end
        assert data["id"] == job["id"] and data["status"] == "running"
        assert data["started_at"] == job["started_at"] and data["result"] is None
        assert data["request"]["callback_url"] == receiver.url + "/own"
        assert "webhook" not in data

        _, invalid = events[("/sub", "dataset.invalid")]
        assert invalid["data"]["id"] == bad["id"] and invalid["data"]["status"] == "invalid"
        assert invalid["data"]["error"] == bad["error"]  # the code, message, line
        assert invalid["data"]["error"]["details"]["line"] == 3

        _, ended = events[("/own", "job.succeeded")]
        assert ended["data"]["status"] == "succeeded"
        assert ended["data"]["result"]["rows_selected"] == 5
        # the end's delivery is logged on the job, as before events had types; the other
        # events' beside their records, and removed with them
        assert _webhook_state(c, job["id"], "delivered")["url"] == receiver.url + "/own"
        r = redis.Redis.from_url(TEST_REDIS_URL, decode_responses=True)
        prefix = service.env["ISA_KEY_PREFIX"]
        log = json.loads(r.hget(f"{prefix}dataset:{bad['id']}:webhooks", "dataset.invalid"))
        assert log["state"] == "delivered" and log["url"] == receiver.url + "/sub"
        assert [a["status_code"] for a in log["attempts"]] == [204]
        assert r.hexists(f"{prefix}job:{job['id']}:webhooks", "job.started")
        assert c.delete(f"/v1/datasets/{bad['id']}").status_code == 204
        assert c.delete(f"/v1/datasets/{ds['id']}").status_code == 204  # and its job
        assert not [k for k in r.scan_iter(f"{prefix}*")
                    if bad["id"] in k or ds["id"] in k or job["id"] in k]
    finally:
        _register(c, url=None)


def test_a_tenant_that_never_chose_receives_job_ends_only(service, receiver, tmp_path):
    c = service.client("key-unsubscribed")
    hook = _register(c, url=receiver.url + "/plain")  # as every client did before events
    assert hook["events"] == list(JOB_END_EVENTS)
    try:
        bad = service.wait_dataset(c, service.upload(c, _invalid_file(tmp_path))["id"])
        ds = service.wait_dataset(c, service.upload(c, HH_SAMPLE)["id"])
        assert (bad["status"], ds["status"]) == ("invalid", "ready")
        job = _job(service, c, ds["id"])
        receiver.wait_for(1)
        time.sleep(QUIET_S)
        events = _verified(receiver, hook["secret"])
        assert list(events) == [("/plain", "job.succeeded")]
        headers, ended = events[("/plain", "job.succeeded")]
        assert headers["webhook-id"] == f"msg_{job['id']}_succeeded"
        assert ended["data"]["id"] == job["id"] and ended["data"]["status"] == "succeeded"
    finally:
        _register(c, url=None)


def test_unknown_event_types_are_refused_and_change_nothing(service):
    url = "http://127.0.0.1:9/hook"  # never called: nothing happens to this tenant
    with Client(service.base_url, api_key="key-unsubscribed") as client:
        assert client.set_webhook(url, events=["job.failed"]).events == ["job.failed"]
        r = client._http.put("/v1/webhook", json={"url": url,
                                                  "events": ["job.failed", "job.begun"]})
        assert r.status_code == 422, r.text
        error = r.json()["error"]
        assert error["code"] == "unknown_event_type" and "'job.begun'" in error["message"]
        assert error["details"]["event"] == "job.begun"
        assert error["details"]["field"] == "body.events[1]"
        assert "dataset.ready" in error["details"]["allowed"]
        with pytest.raises(errors.UnknownEventTypeError) as exc:
            client.set_webhook(None, events=["Job.Started"])  # case matters
        assert exc.value.status == 422 and exc.value.details["event"] == "Job.Started"
        after = client.webhook()
        assert (after.url, after.events) == (url, ["job.failed"])  # both refusals wrote nothing
        assert client.set_webhook(url, events=[]).events == []
        assert client.set_webhook(url).events == list(JOB_END_EVENTS)  # omitted: the default
        client.set_webhook(None)


def test_the_remote_cli_sets_and_shows_the_events(service):
    env = {**os.environ, "ISA_SERVER_URL": service.base_url, "ISA_API_KEY": "key-unsubscribed"}

    def isa(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "isa", "remote", "webhook", *args],
                              env=env, capture_output=True, text=True, timeout=120)

    url = "http://127.0.0.1:9/cli"
    try:
        done = isa("--url", url, "--events", "job.started, dataset.ready")
        assert done.returncode == 0, done.stderr
        assert json.loads(done.stdout)["events"] == ["job.started", "dataset.ready"]
        done = isa("--events", "dataset.invalid")  # the URL stays
        assert done.returncode == 0, done.stderr
        shown = json.loads(isa().stdout)
        assert (shown["url"], shown["events"]) == (url, ["dataset.invalid"])
        refused = isa("--events", "dataset.created")
        assert refused.returncode == 2 and "unknown_event_type" in refused.stderr
        assert json.loads(isa().stdout)["events"] == ["dataset.invalid"]
    finally:
        isa("--remove")
