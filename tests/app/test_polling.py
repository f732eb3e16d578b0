"""The polling fast path (app/api/polling.py) against a real Redis: it answers exactly
the successful polls, with the route's answer, and hands every other request on."""

from __future__ import annotations

import asyncio
import json
import uuid

import httpx
import pytest
import redis

from app.api.polling import JobPollFastPath, api_key_of
from core.records import JobStore, new_id
from core.settings import get_settings
from tests.conftest import TEST_REDIS_URL

KEYS = {"key-a": "tenant-a", "key-b": "tenant-b"}


@pytest.fixture
def jobs(monkeypatch) -> tuple[str, str, str]:
    """(prefix, tenant-a's queued job, tenant-a's succeeded job), in settings of their own."""
    prefix = f"test-poll-{uuid.uuid4().hex[:8]}:"
    monkeypatch.setenv("ISA_REDIS_URL", TEST_REDIS_URL)
    monkeypatch.setenv("ISA_KEY_PREFIX", prefix)
    monkeypatch.setenv("ISA_API_KEYS", json.dumps(KEYS))
    get_settings.cache_clear()
    store = JobStore(redis.Redis.from_url(TEST_REDIS_URL, decode_responses=True), prefix)
    ids = []
    for status in ("queued", "succeeded"):
        job_id = new_id("job")
        store.create("tenant-a", job_id, status, {
            "type": "select", "stage": status, "progress_done": 0, "progress_total": 0,
            "request": {"type": "select", "dataset_id": "ds_x", "method": "isa",
                        "budget": {"fraction": 0.05}}})
        ids.append(job_id)
    yield prefix, ids[0], ids[1]
    r = redis.Redis.from_url(TEST_REDIS_URL)
    for key in r.scan_iter(f"{prefix}*"):
        r.delete(key)
    get_settings.cache_clear()


def _store(prefix: str) -> JobStore:
    return JobStore(redis.Redis.from_url(TEST_REDIS_URL, decode_responses=True), prefix)


def test_the_api_key_is_read_as_the_route_reads_it():
    assert api_key_of([(b"x-api-key", b"k1"), (b"authorization", b"Bearer k2")]) == "k1"
    assert api_key_of([(b"x-api-key", b""), (b"authorization", b"bearer  k2 ")]) == "k2"
    assert api_key_of([(b"authorization", b"Basic k2")]) is None
    assert api_key_of([(b"authorization", b"Bearer")]) is None
    assert api_key_of([]) is None


async def _call(path: str, headers: list[tuple[bytes, bytes]], query: bytes = b"",
                method: str = "GET") -> tuple[list[dict], list[dict]]:
    """(what the fast path sent, the scopes it handed on to the app behind it). A test
    makes all its calls on one event loop: the gateway's Redis client is one per process
    (and so per loop)."""
    sent, passed = [], []

    async def inner(scope, receive, send):
        passed.append(scope)

    async def send(message):
        sent.append(message)

    async def receive():
        return {"type": "http.request", "body": b""}

    scope = {"type": "http", "method": method, "path": path, "query_string": query,
             "headers": headers}
    await JobPollFastPath(inner)(scope, receive, send)
    return sent, passed


def test_a_successful_poll_is_answered_without_the_route(jobs):
    _, queued, done = jobs

    async def both():
        return [await _call(f"/v1/jobs/{j}", [(b"x-api-key", b"key-a")]) for j in (queued, done)]

    for job_id, (sent, passed) in zip((queued, done), asyncio.run(both()), strict=True):
        assert not passed
        assert sent[0]["status"] == 200
        body = json.loads(sent[1]["body"])
        assert body["id"] == job_id and body["status"] in ("queued", "succeeded")
        assert dict(sent[0]["headers"])[b"content-length"] == str(len(sent[1]["body"])).encode()


@pytest.mark.parametrize("case", ["no key", "wrong key", "other tenant", "unknown job",
                                  "query string", "sub-path", "POST"])
def test_everything_else_goes_on_to_the_route(jobs, case):
    _, queued, _ = jobs
    path, headers, query, method = f"/v1/jobs/{queued}", [(b"x-api-key", b"key-a")], b"", "GET"
    if case == "no key":
        headers = []
    elif case == "wrong key":
        headers = [(b"x-api-key", b"key-z")]
    elif case == "other tenant":
        headers = [(b"x-api-key", b"key-b")]
    elif case == "unknown job":
        path = "/v1/jobs/job_nothere"
    elif case == "query string":
        query = b"fields=id"
    elif case == "sub-path":
        path += "/events"
    else:
        method = "POST"
    sent, passed = asyncio.run(_call(path, headers, query, method))
    assert not sent and len(passed) == 1


@pytest.mark.parametrize("query", [b"", b"limit=1", b"limit=500", b"offset=1",
                                   b"limit=2&offset=1", b"offset=0&limit=20"])
def test_a_plain_list_page_is_answered_without_the_route(jobs, query):
    prefix, queued, done = jobs
    sent, passed = asyncio.run(_call("/v1/jobs", [(b"x-api-key", b"key-a")], query))
    assert not passed and sent[0]["status"] == 200
    body = json.loads(sent[1]["body"])
    params = dict(x.split("=") for x in query.decode().split("&") if x)
    limit, offset = int(params.get("limit", 50)), int(params.get("offset", 0))
    newest_first = [d["id"] for d in _store(prefix).list("tenant-a", limit=10).records]
    assert sorted(newest_first) == sorted([queued, done])
    assert [j["id"] for j in body["data"]] == newest_first[offset:offset + limit]
    assert body["count"] == 2 and body["has_more"] is (offset + limit < 2)


@pytest.mark.parametrize("query", [b"limit=0", b"limit=501", b"limit=05", b"limit=+5",
                                   b"offset=1000001", b"limit=1&limit=2", b"limit=1&",
                                   b"status=queued", b"limit=1&status=queued", b"after=x",
                                   b"limit=%32"])
def test_any_other_list_query_goes_on_to_the_route(jobs, query):
    sent, passed = asyncio.run(_call("/v1/jobs", [(b"x-api-key", b"key-a")], query))
    assert not sent and len(passed) == 1


def test_redis_failing_goes_on_to_the_route(jobs, monkeypatch):
    _, queued, _ = jobs
    monkeypatch.setenv("ISA_REDIS_URL", "redis://127.0.0.1:1/0")  # nothing listens there
    get_settings.cache_clear()
    sent, passed = asyncio.run(_call(f"/v1/jobs/{queued}", [(b"x-api-key", b"key-a")]))
    assert not sent and len(passed) == 1


def test_the_gateway_answers_the_same_with_and_without_it(jobs, monkeypatch):
    """Every answer of GET /v1/jobs/{id}: the fast path on and off give the same status and
    body, and /metrics counts the fast path's answers under the route's label."""
    from app.main import create_app
    from app.metrics import REQUESTS

    _, queued, done = jobs
    apps = {}
    for on in (True, False):
        monkeypatch.setenv("ISA_API_POLL_FAST_PATH", str(on).lower())
        get_settings.cache_clear()
        apps[on] = create_app()
    requests = [(f"/v1/jobs/{queued}", {"X-API-Key": "key-a"}),
                (f"/v1/jobs/{done}", {"Authorization": "Bearer key-a"}),
                (f"/v1/jobs/{done}", {"X-API-Key": "key-b"}),
                ("/v1/jobs/job_nothere", {"X-API-Key": "key-a"}),
                (f"/v1/jobs/{done}", {}),
                (f"/v1/jobs/{done}?bogus=1", {"X-API-Key": "key-a"}),
                ("/v1/jobs?limit=1&offset=1", {"X-API-Key": "key-a"}),
                ("/v1/jobs", {"X-API-Key": "key-b"}),
                ("/v1/jobs?limit=0", {"X-API-Key": "key-a"}),
                ("/v1/jobs?limit=1", {})]
    label = ("GET", "/v1/jobs/{job_id}", "200")
    list_label = ("GET", "/v1/jobs", "200")

    async def answers(app):
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                     base_url="http://test") as c:
            return [(r.status_code, r.json()) for r in
                    [await c.get(p, headers=h) for p, h in requests]]

    async def on_and_off():
        return await answers(apps[True]), await answers(apps[False])

    before = REQUESTS.labels(*label)._value.get(), REQUESTS.labels(*list_label)._value.get()
    on, off = asyncio.run(on_and_off())
    # 422: an unknown parameter, a limit out of bounds
    assert [s for s, _ in on] == [200, 200, 404, 404, 401, 422, 200, 200, 422, 401]
    assert on == off
    second = _store(jobs[0]).list("tenant-a", limit=2).records[1]["id"]
    assert on[6][1]["data"][0]["id"] == second and on[7][1]["count"] == 0
    # 2 polls and 2 list pages, each app
    assert REQUESTS.labels(*label)._value.get() - before[0] == 4
    assert REQUESTS.labels(*list_label)._value.get() - before[1] == 4
