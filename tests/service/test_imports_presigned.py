"""Presigned-URL imports against the real gateway and worker: a loopback web server that
serves the file only with the right signature in the query string. The query is allowed
only under ``import_query_allowed_urls``, reaches the source, and is never stored in the
data set's record, shown in its answers or errors, or written to the logs."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import redis

from tests.conftest import HH_SAMPLE, TEST_REDIS_URL
from tests.service.conftest import IMPORT_BUCKET
from tests.workers.conftest import worker_ctx  # noqa: F401 - a fixture, for the unit tests

SIGNATURE = "c2VjcmV0LXNpZ25hdHVyZQ-never-logged"


class _Signed:
    """Answers 200 with the sample when ``X-Amz-Signature`` is right, else 403 (as S3)."""

    def __init__(self) -> None:
        body = HH_SAMPLE.read_bytes()
        seen: list[dict[str, list[str]]] = []
        self.seen = seen

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802
                query = parse_qs(urlsplit(self.path).query)
                seen.append(query)
                ok = query.get("X-Amz-Signature") == [SIGNATURE]
                self.send_response(200 if ok else 403)
                self.send_header("Content-Length", str(len(body) if ok else 0))
                self.end_headers()
                if ok:
                    self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


def _everything_stored(service) -> str:
    """Every key and value of the test's Redis namespace, as one text (read as bytes: the
    embedding index holds binary keys; undecodable bytes become U+FFFD)."""
    r = redis.Redis.from_url(TEST_REDIS_URL)
    out: list[bytes] = []
    for key in r.scan_iter(f"{service.env['ISA_KEY_PREFIX']}*".encode()):
        kind = r.type(key)
        out.append(key)
        if kind == b"hash":
            out.extend(k + b"=" + v for k, v in r.hgetall(key).items())
        elif kind == b"string":
            out.append(r.get(key) or b"")
        elif kind == b"list":
            out.extend(r.lrange(key, 0, -1))
        elif kind == b"set":
            out.extend(r.smembers(key))
        elif kind == b"zset":
            out.extend(r.zrange(key, 0, -1))
    return b"\n".join(out).decode("utf-8", errors="replace")


def test_a_presigned_url_imports_and_its_signature_is_kept_nowhere(service):
    web = _Signed()
    try:
        c = service.client("key-b")
        path = f"{web.url}/bucket/hh.jsonl.gz"
        url = (f"{path}?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Expires=600"
               f"&X-Amz-Signature={SIGNATURE}")
        r = c.post("/v1/datasets/import", json={"url": url})
        assert r.status_code == 201, r.text
        assert r.json()["source_url"] == path  # shown without its query
        ds = service.wait_dataset(c, r.json()["id"])
        assert (ds["status"], ds["rows_valid"], ds["filename"]) == ("ready", 600, "hh.jsonl.gz")
        assert web.seen[-1]["X-Amz-Expires"] == ["600"]  # the whole query reached the source
        assert SIGNATURE not in _everything_stored(service)  # read, then forgotten
        bad = c.post("/v1/datasets/import", json={"url": url.replace(SIGNATURE, "wrong")})
        failed = service.wait_dataset(c, bad.json()["id"])
        assert failed["status"] == "invalid" and failed["error"]["code"] == "import_failed"
        assert "403" in failed["error"]["message"] and "wrong" not in str(failed)
        for name in ("api", "worker"):
            assert SIGNATURE not in service.logs[name].read_text(errors="replace"), name
    finally:
        web.server.shutdown()


class _Held:
    """Holds each GET until ``release`` is set, then answers 403 (the import fails, as an
    expired signature would): a data set deleted while its import is under way."""

    def __init__(self) -> None:
        self.release, self.seen = threading.Event(), threading.Event()
        held = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802
                held.seen.set()
                held.release.wait(60)
                self.send_response(403)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


def test_deleting_an_import_deletes_its_waiting_query(service):
    from core.imports import query_key

    web = _Held()
    r = redis.Redis.from_url(TEST_REDIS_URL, decode_responses=True)
    try:
        c = service.client("key-b")
        made = c.post("/v1/datasets/import", json={
            "url": f"{web.url}/bucket/hh.jsonl.gz?X-Amz-Signature={SIGNATURE}"})
        assert made.status_code == 201, made.text
        dataset_id = made.json()["id"]
        key = query_key(service.env["ISA_KEY_PREFIX"], dataset_id)
        assert web.seen.wait(60), service.tail("worker")  # the worker is reading it
        assert r.get(key) == f"X-Amz-Signature={SIGNATURE}"  # kept until the read ends
        assert c.delete(f"/v1/datasets/{dataset_id}").status_code == 204
        assert r.get(key) is None  # gone with its data set, not left for a day
        assert SIGNATURE not in _everything_stored(service)
    finally:
        web.release.set()
        web.server.shutdown()
    assert c.get(f"/v1/datasets/{dataset_id}").status_code == 404


def test_a_query_string_elsewhere_is_refused_without_repeating_it(service):
    c = service.client("key-b")
    r = c.post("/v1/datasets/import", json={
        "url": f"s3://{IMPORT_BUCKET}/allowed/hh.jsonl.gz?X-Amz-Signature={SIGNATURE}"})
    assert r.status_code == 422 and r.json()["error"]["code"] == "import_not_allowed", r.text
    assert SIGNATURE not in r.text and "import_query_allowed_urls" in r.text


# --- the worker's side, in this process: a refusal there never repeats the query ---------

UNRESOLVABLE = "https://bucket.example.invalid/"  # .invalid never resolves (RFC 6761)
PRESIGNED_QUERY = (f"X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIAEXAMPLE%2F2024"
                   f"&X-Amz-Signature={SIGNATURE}")


def _presigned_settings(settings):
    return settings.model_copy(update={"import_allowed_urls": [UNRESOLVABLE],
                                       "import_query_allowed_urls": [UNRESOLVABLE]})


def test_a_host_that_does_not_resolve_is_refused_without_the_query():
    import pytest

    from core.imports import check_import_url
    from core.settings import Settings
    from isa.errors import ConfigError

    url = f"{UNRESOLVABLE}hh.jsonl?{PRESIGNED_QUERY}"
    with pytest.raises(ConfigError) as exc:
        check_import_url(url, _presigned_settings(Settings()))
    assert exc.value.code == "import_not_allowed"
    text = str(exc.value.to_dict())
    assert "does not resolve" in text and f"{UNRESOLVABLE}hh.jsonl" in text  # still named
    assert SIGNATURE not in text and "X-Amz" not in text and "AKIAEXAMPLE" not in text


def _imported(ctx, source_url: str, query: str) -> str:
    """An import's record and query key, as the gateway leaves them for the worker."""
    from core.artifacts import Keys
    from core.contract import DatasetOptions
    from core.imports import query_key
    from core.records import new_id

    dataset_id = new_id("ds")
    ctx.datasets.r.set(query_key(ctx.datasets.prefix, dataset_id), query)
    ctx.datasets.create("t1", dataset_id, "uploaded", {
        "filename": "hh.jsonl", "size_bytes": 0, "sha256": "",
        "artifact": Keys.upload(dataset_id, ".jsonl"), "source_url": source_url,
        "hub": None, "options": DatasetOptions().model_dump(exclude_none=True)})
    return dataset_id


def test_dns_failing_at_the_worker_keeps_the_signature_out_of_the_record(
        worker_ctx, monkeypatch):  # noqa: F811 - the fixture imported above
    from core.imports import query_key
    from workers.tasks.datasets import validate_dataset

    monkeypatch.setattr(worker_ctx, "settings", _presigned_settings(worker_ctx.settings))
    dataset_id = _imported(worker_ctx, f"{UNRESOLVABLE}hh.jsonl", PRESIGNED_QUERY)
    assert validate_dataset.run(dataset_id) == "invalid"
    doc = worker_ctx.datasets.get(dataset_id)
    assert doc["error"]["code"] == "import_not_allowed", doc["error"]
    assert "does not resolve" in doc["error"]["message"]
    assert SIGNATURE not in str(doc) and "AKIAEXAMPLE" not in str(doc)
    assert worker_ctx.datasets.r.get(query_key(worker_ctx.datasets.prefix, dataset_id)) is None


def test_an_engine_error_naming_the_url_is_scrubbed_too(
        worker_ctx, monkeypatch):  # noqa: F811 - the fixture imported above
    """Whatever raises the EngineError (a check, the Hub, a later change) and however it
    quotes the query (whole, one value, percent-decoded), the record shows none of it."""
    import workers.tasks.datasets as task
    from isa.errors import ConfigError

    def refuse(url, out, settings, limit, hub=None):
        raise ConfigError(f"GET {url} failed; credential AKIAEXAMPLE/2024, signature "
                          f"{SIGNATURE}", code="import_failed", field="url",
                          url=url)

    monkeypatch.setattr(task, "copy_url", refuse)
    dataset_id = _imported(worker_ctx, f"{UNRESOLVABLE}hh.jsonl", PRESIGNED_QUERY)
    assert task.validate_dataset.run(dataset_id) == "invalid"
    error = worker_ctx.datasets.get(dataset_id)["error"]
    assert error["code"] == "import_failed" and "hh.jsonl" in error["message"], error
    for secret in (SIGNATURE, "AKIAEXAMPLE", PRESIGNED_QUERY):
        assert secret not in str(error), (secret, error)
