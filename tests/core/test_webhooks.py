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
