"""Webhook signatures (checked by an independent Standard Webhooks implementation) and the
address rule for callback URLs."""

from __future__ import annotations

import time

import pytest
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from core.webhooks import check_callback_url, new_secret, pinned, sign
from isa.errors import ConfigError


def test_the_signature_verifies_with_the_reference_library():
    secret, body, ts = new_secret(), b'{"type": "job.succeeded"}', int(time.time())
    headers = {"webhook-id": "msg_1", "webhook-timestamp": str(ts),
               "webhook-signature": sign(secret, "msg_1", ts, body)}
    assert Webhook(secret).verify(body, headers) == {"type": "job.succeeded"}
    with pytest.raises(WebhookVerificationError):  # another secret
        Webhook(new_secret()).verify(body, headers)
    with pytest.raises(WebhookVerificationError):  # a changed body
        Webhook(secret).verify(body + b" ", headers)


@pytest.mark.parametrize("url", [
    "http://127.0.0.1:8080/hook", "http://localhost/hook", "http://10.0.0.7/",
    "http://192.168.1.1/", "http://169.254.169.254/latest/meta-data",  # cloud metadata
    "http://[::1]/", "http://[::ffff:127.0.0.1]/", "http://0.0.0.0/", "http://100.64.0.1/",
])
def test_non_public_addresses_are_refused(url):
    with pytest.raises(ConfigError) as exc:
        check_callback_url(url)
    assert exc.value.code == "invalid_callback_url" and "not a public address" in str(exc.value)


@pytest.mark.parametrize("url", ["ftp://example.org/x", "http://user:pw@8.8.8.8/",
                                 "http:///path", "http://no-such-host.invalid/",
                                 "http://[8.8.8.8/", "https://ex]ample.org/"])
def test_other_bad_urls_are_refused(url):
    with pytest.raises(ConfigError) as exc:
        check_callback_url(url)
    assert exc.value.code == "invalid_callback_url"


def test_public_and_allowed_addresses_pass():
    assert check_callback_url("https://8.8.8.8/hook") == ["8.8.8.8"]
    assert check_callback_url("http://127.0.0.1:9/x", ["127.0.0.0/8"]) == ["127.0.0.1"]
    with pytest.raises(ConfigError):  # the allowance is for that network only
        check_callback_url("http://10.0.0.1/", ["127.0.0.0/8"])


@pytest.mark.parametrize(("url", "addresses", "want"), [
    ("https://hooks.example/h?x=1", ["93.184.216.34"],
     [("https://93.184.216.34/h?x=1", {"host": "hooks.example"},
       {"sni_hostname": "hooks.example"})]),
    ("http://hooks.example:8080/h", ["2606:2800:220:1::1", "93.184.216.34"],  # both, in order
     [("http://[2606:2800:220:1::1]:8080/h", {"host": "hooks.example:8080"}, {}),
      ("http://93.184.216.34:8080/h", {"host": "hooks.example:8080"}, {})]),
    ("https://bücher.example/h", ["93.184.216.34"],  # the name as IDNA, as httpx sends it
     [("https://93.184.216.34/h", {"host": "xn--bcher-kva.example"},
       {"sni_hostname": "xn--bcher-kva.example"})]),
    ("http://8.8.8.8/h", ["8.8.8.8"], [("http://8.8.8.8/h", {}, {})]),  # nothing to resolve
])
def test_pinned_connects_to_the_checked_addresses_under_the_name(url, addresses, want):
    assert pinned(url, addresses) == want


def test_through_a_proxy_the_url_is_left_to_it(monkeypatch):
    monkeypatch.setenv("https_proxy", "http://proxy.internal:3128")
    monkeypatch.setenv("no_proxy", "skip.example")
    assert pinned("https://hooks.example/h", ["93.184.216.34"]) == [
        ("https://hooks.example/h", {}, {})]  # the proxy resolves (and is the egress rule)
    assert pinned("https://skip.example/h", ["93.184.216.34"])[0][0] == \
        "https://93.184.216.34/h"


@pytest.mark.parametrize("queue", ["cpu", "gpu", "my-jobs"])
def test_the_webhook_queue_is_never_one_jobs_go_to(queue):
    from pydantic import ValidationError

    from core.settings import Settings

    with pytest.raises(ValidationError, match="webhook deliveries need one of their own"):
        Settings(webhook_queue=queue, default_queue="my-jobs")
    assert Settings(webhook_queue="hooks", default_queue="my-jobs").webhook_queue == "hooks"


def test_a_rotation_signs_with_both_secrets_until_its_overlap_ends():
    import time
    import uuid

    import redis

    from core.webhooks import WebhookStore
    from tests.conftest import TEST_REDIS_URL

    client = redis.Redis.from_url(TEST_REDIS_URL, decode_responses=True)
    hooks = WebhookStore(client, f"isa-hooks-{uuid.uuid4().hex[:8]}:")
    try:
        first = hooks.get("t")["secret"]
        assert hooks.signing_secrets("t") == [first]
        after = hooks.rotate_secret("t", overlap_s=60)
        assert after["secret"] != first
        assert 50 < after["previous_secret_valid_until"] - time.time() <= 60
        assert hooks.signing_secrets("t") == [after["secret"], first]
        # the overlap over: the old secret signs no more
        client.hset(hooks._key("t"), "previous_until", repr(time.time() - 1))
        assert hooks.signing_secrets("t") == [after["secret"]]
        assert hooks.get("t")["previous_secret_valid_until"] is None
        # another tenant's secrets are its own
        assert first not in hooks.signing_secrets("u")
    finally:
        for key in client.scan_iter(f"{hooks.prefix}*"):
            client.delete(key)


def test_every_event_type_is_some_status_change():
    from core.webhook_events import EVENT_OF
    from isa.remote.contract import JOB_END_EVENTS, WEBHOOK_EVENTS

    assert sorted(EVENT_OF.values()) == sorted(WEBHOOK_EVENTS)
    assert EVENT_OF[("job", "running")] == "job.started"
    assert EVENT_OF[("dataset", "invalid")] == "dataset.invalid"
    assert ("job", "cancelling") not in EVENT_OF and ("dataset", "validating") not in EVENT_OF
    assert set(JOB_END_EVENTS) < set(WEBHOOK_EVENTS)


def test_each_event_goes_where_the_subscription_says():
    import uuid

    import redis

    from core.webhooks import WebhookStore
    from tests.conftest import TEST_REDIS_URL

    client = redis.Redis.from_url(TEST_REDIS_URL, decode_responses=True)
    hooks = WebhookStore(client, f"isa-hooks-{uuid.uuid4().hex[:8]}:")
    url, own = "https://hooks.example/t", "https://own.example/job"
    try:
        assert hooks.destination("t", "job.succeeded") is None  # nothing registered
        # a registration without events: the job end events, as before subscriptions
        assert hooks.register("t", url)["events"] == ["job.succeeded", "job.failed",
                                                      "job.cancelled"]
        assert hooks.destination("t", "job.failed") == url
        assert hooks.destination("t", "job.started") is None
        assert hooks.destination("t", "dataset.ready") is None
        # a job's own URL takes its end, never its start
        assert hooks.destination("t", "job.succeeded", own) == own
        assert hooks.destination("t", "job.started", own) is None

        doc = hooks.register("t", url, ["dataset.ready", "job.started"])
        assert doc["events"] == ["dataset.ready", "job.started"] == hooks.get("t")["events"]
        assert hooks.destination("t", "dataset.ready") == url
        assert hooks.destination("t", "job.started", own) == url
        assert hooks.destination("t", "job.succeeded") is None  # not chosen any more
        assert hooks.destination("t", "dataset.invalid") is None
        assert hooks.destination("t", "job.succeeded", own) == own

        assert hooks.register("t", url, [])["events"] == []
        assert all(hooks.destination("t", e) is None for e in ("job.failed", "dataset.ready"))
        # no URL: nothing for the tenant, whatever it chose; the secret stays
        secret = hooks.get("t")["secret"]
        assert hooks.register("t", None, ["dataset.ready"])["url"] is None
        assert hooks.destination("t", "dataset.ready") is None
        assert hooks.get("t")["secret"] == secret
        # another tenant's choice is its own
        assert hooks.destination("u", "dataset.ready") is None
    finally:
        for key in client.scan_iter(f"{hooks.prefix}*"):
            client.delete(key)


def test_a_status_change_queues_its_event_only_for_a_receiver(jobs, monkeypatch):
    """The store's hook (core.webhook_events.announce) on the real Redis: the message
    carries the record's public document as it was at the change; nothing is queued for
    a tenant that receives nothing, nor for a running job resumed (no change)."""
    from core.celery_app import celery_app
    from core.records import DatasetStore, JobStore
    from core.webhook_events import announce
    from core.webhooks import WebhookStore

    sent: list[tuple] = []
    monkeypatch.setattr(celery_app, "send_task",
                        lambda name, args, queue: sent.append((name, *args, queue)))
    store = JobStore(jobs.r, jobs.prefix, on_moved=announce)
    datasets = DatasetStore(jobs.r, jobs.prefix, on_moved=announce)
    hooks = WebhookStore(jobs.r, jobs.prefix)
    request = {"type": "select", "dataset_id": "ds_1", "method": "random",
               "budget": {"count": 5}}
    for rid, tenant in (("j1", "quiet"), ("j2", "loud")):
        store.create(tenant, rid, "queued", {"type": "select", "request": request})
    datasets.create("loud", "ds_1", "validating", {
        "filename": "p.jsonl", "size_bytes": 10, "sha256": "0" * 64, "options": {}})

    hooks.register("quiet", "https://hooks.example/q")  # the job end events only
    hooks.register("loud", "https://hooks.example/l", ["job.started", "dataset.invalid"])
    for rid in ("j1", "j2"):
        store.transition(rid, "running", started_at=123.0)
    store.transition("j2", "running")  # a resumed run: no second job.started
    datasets.transition("ds_1", "invalid", error={"code": "empty_file", "message": "empty",
                                                  "details": {}})
    store.transition("j2", "succeeded", result={})  # not chosen by "loud"
    assert [(m[1], m[3]) for m in sent] == [("j2", "job.started"),
                                            ("ds_1", "dataset.invalid")]
    started, invalid = sent[0][4], sent[1][4]
    assert started["status"] == "running" and started["started_at"] == 123.0
    assert "webhook" not in started and started["request"]["method"] == "random"
    assert invalid["status"] == "invalid" and invalid["error"]["code"] == "empty_file"
    assert sent[0][2] == 1 and sent[0][5] == "webhooks"  # the first attempt, its queue

    sent.clear()
    store.transition("j1", "failed", error={"code": "x", "message": "x", "details": {}})
    assert [(m[1], m[3], m[4]["status"]) for m in sent] == [("j1", "job.failed", "failed")]
