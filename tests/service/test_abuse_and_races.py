"""Races and hostile input against the real service: each ends at once with a clear 4xx
(or a clear invalid data set), and nothing else is affected."""

from __future__ import annotations

import gzip
import json
import socket
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from tests.conftest import ALPACA_SAMPLE, read_rows, write_jsonl


def _ready(service, c, tmp_path: Path, rows: list[dict], name: str = "d.jsonl") -> dict:
    ds = service.wait_dataset(c, service.upload(c, write_jsonl(tmp_path / name, rows))["id"])
    assert ds["status"] == "ready", ds
    return ds


def test_twenty_concurrent_requests_per_idempotency_key_make_one_job_each(service, tmp_path):
    c = service.client()
    ds = _ready(service, c, tmp_path, read_rows(ALPACA_SAMPLE, 30))
    keys = [f"race-{i}-{time.time_ns()}" for i in range(5)]
    body = {"type": "select", "dataset_id": ds["id"], "method": "random",
            "budget": {"count": 3}}

    def post(key: str) -> tuple[str, int, str | None]:
        with service.client() as own:
            r = own.post("/v1/jobs", json=body, headers={"Idempotency-Key": key})
            return key, r.status_code, r.json().get("id")

    with ThreadPoolExecutor(max_workers=20) as pool:
        answers = list(pool.map(post, [k for k in keys for _ in range(20)]))
    assert {status for _, status, _ in answers} <= {200, 201, 409}
    for key in keys:
        mine = [(s, i) for k, s, i in answers if k == key]
        assert [s for s, _ in mine].count(201) == 1, mine
        assert len({i for s, i in mine if s in (200, 201)}) == 1, mine
    # the late replays agree, and the tenant has exactly one job per key
    ids = {c.post("/v1/jobs", json=body, headers={"Idempotency-Key": k}).json()["id"]
           for k in keys}
    assert len(ids) == 5
    listed = {j["id"] for j in c.get("/v1/jobs", params={"limit": 500}).json()["data"]}
    assert ids <= listed


@pytest.mark.parametrize(("change", "code"), [
    ({"params": {"n_components": "two"}}, "invalid_parameters"),
    ({"params": {"random_state": -1}}, "invalid_parameters"),
    ({"params": {"covariance_type": "weird"}}, "invalid_parameters"),
    ({"params": {"n_components": -1}}, "invalid_parameters"),
    ({"params": {"pca_components": 10 ** 9}}, "invalid_parameters"),
    ({"params": {"max_iter": 0}}, "invalid_parameters"),
    ({"method": "density", "params": {"n_bits": 99}}, "invalid_parameters"),
    ({"budget": {"count": 10 ** 30}}, "validation_error"),
    ({"encoder": {"name": "sentence", "model": "/etc"}}, "validation_error"),
    ({"encoder": {"name": "sentence", "model": "not-a-packaged-model"}}, "unknown_model"),
    ({"encoder": {"name": "static", "precision": "bfloat16"}}, "invalid_encoder"),
    ({"encoder": {"name": "causal-lm", "backend": "openvino"}}, "invalid_encoder"),
    ({"queue": "gpu"}, "queue_unavailable"),
    ({"method": "clean", "params": {"base": "nope"}}, "unknown_method"),
])
def test_bad_parameters_are_refused_at_post(service, tmp_path, change, code):
    c = service.client()
    ds = _ready(service, c, tmp_path, read_rows(ALPACA_SAMPLE, 10))
    body = {"type": "select", "dataset_id": ds["id"], "method": "isa",
            "budget": {"count": 2}, **change}
    before = c.get("/v1/jobs", params={"limit": 500}).json()["count"]
    r = c.post("/v1/jobs", json=body)
    assert r.status_code in (409, 422), r.text
    assert r.json()["error"]["code"] == code, r.json()
    assert c.get("/v1/jobs", params={"limit": 500}).json()["count"] == before


def test_every_parameter_beyond_its_bound_is_refused_at_post(service, tmp_path):
    from tests.isa.test_method_bounds import BOUNDED, edges

    c = service.client()
    ds = _ready(service, c, tmp_path, read_rows(ALPACA_SAMPLE, 10))
    before = c.get("/v1/jobs", params={"limit": 500}).json()["count"]
    for method, param, kind, bounds in BOUNDED:
        for value in edges(kind, bounds)[1]:
            r = c.post("/v1/jobs", json={"type": "select", "dataset_id": ds["id"],
                                         "method": method, "params": {param: value},
                                         "budget": {"count": 2}})
            assert r.status_code == 422, (method, param, value, r.text)
            error = r.json()["error"]
            assert error["code"] == "invalid_parameters" and param in error["message"], error
    # nothing was created, and a parameter at its edge runs to the end
    assert c.get("/v1/jobs", params={"limit": 500}).json()["count"] == before
    r = c.post("/v1/jobs", json={"type": "select", "dataset_id": ds["id"], "method": "isa",
                                 "params": {"max_iter": 1, "tol": 1.0, "n_components": 1},
                                 "budget": {"count": 2}, "encoder": {"name": "static"}})
    assert r.status_code == 201, r.text
    assert service.wait_job(c, r.json()["id"])["status"] == "succeeded"


def test_oversized_bodies_are_refused_while_streaming(service, tmp_path):
    from tests.service.conftest import MAX_UPLOAD

    c = service.client()
    listed = c.get("/v1/datasets").json()["count"]
    big = c.post("/v1/jobs", content=b'{"type": "select", "x": "' + b"a" * (2 << 20) + b'"}',
                 headers={"Content-Type": "application/json"})
    assert big.status_code == 413 and big.json()["error"]["code"] == "request_too_large"

    # A chunked upload with no Content-Length: the client sends just past the limit and
    # then goes quiet. The 413 must come now, not after a body that never ends.
    host, port = service.base_url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=15) as sock:
        sock.sendall(b"POST /v1/datasets HTTP/1.1\r\nHost: x\r\nX-API-Key: key-a\r\n"
                     b"Content-Type: multipart/form-data; boundary=b\r\n"
                     b"Transfer-Encoding: chunked\r\n\r\n")
        head = (b'--b\r\nContent-Disposition: form-data; name="file"; filename="x.jsonl"'
                b"\r\n\r\n")
        sock.sendall(b"%x\r\n%s\r\n" % (len(head), head))
        block = b"x" * (1 << 20)
        for _ in range(MAX_UPLOAD // len(block) + 2):
            sock.sendall(b"%x\r\n%s\r\n" % (len(block), block))
        answer = b""
        while b"}}" not in answer:  # the JSON error body closes with }}
            part = sock.recv(65536)
            if not part:
                break
            answer += part
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    assert b"upload_too_large" in answer
    assert c.get("/v1/datasets").json()["count"] == listed


def test_bad_read_options_make_the_data_set_invalid_not_stuck(service, tmp_path):
    c = service.client()
    path = write_jsonl(tmp_path / "x.jsonl", read_rows(ALPACA_SAMPLE, 5))
    # an unknown shape is refused at the door: the form field is an enum in the schema
    with open(path, "rb") as fh:
        r = c.post("/v1/datasets", files={"file": ("x.jsonl", fh)}, data={"shape": "bogus"})
    assert r.status_code == 422 and r.json()["error"]["details"]["errors"][0]["field"] == \
        "body.shape"
    # so is an empty one, which FastAPI alone would read as "not given" (detect it)
    listed = c.get("/v1/datasets").json()["count"]
    for field in ("format", "shape", "on_invalid"):
        with open(path, "rb") as fh:
            r = c.post("/v1/datasets", files={"file": ("x.jsonl", fh)}, data={field: ""})
        assert r.status_code == 422, r.text
        assert r.json()["error"]["code"] == "invalid_options", r.text
        assert r.json()["error"]["details"]["field"] == field
    assert c.get("/v1/datasets").json()["count"] == listed
    # a column map only the file can refute: accepted, then invalid with its code
    ds = service.wait_dataset(c, service.upload(
        c, path, column_map='{"prompt": "nonsense"}')["id"], timeout=30)
    assert ds["status"] == "invalid", ds
    assert ds["error"]["code"] == "invalid_column_map"


def test_errors_name_the_uploaded_file_never_a_server_path(service, tmp_path):
    c = service.client()
    path = tmp_path / "mine.jsonl.gz"
    path.write_bytes(gzip.compress(b'{"prompt": "p", "chosen": "a", "rejected": "b"}\n'
                                   b'{"prompt": 3, "chosen": "a", "rejected": "b"}\n'))
    ds = service.wait_dataset(c, service.upload(c, path)["id"])
    assert ds["status"] == "invalid"
    text = str(ds["error"]) + str(ds["report"])
    assert "mine.jsonl.gz" in text and str(service.data_dir) not in text
    assert "/artifacts/" not in text


def test_a_cache_hit_never_tells_one_tenant_what_another_holds(service, tmp_path):
    rows = read_rows(ALPACA_SAMPLE, 500)[440:460]
    body = {"type": "select", "method": "isa", "budget": {"count": 3},
            "encoder": {"name": "sentence", "max_seq_length": 96}}
    results = []
    for key in ("key-a", "key-b"):
        c = service.client(key)
        ds = _ready(service, c, tmp_path, rows, name=f"{key}.jsonl")
        job = service.wait_job(c, c.post("/v1/jobs", json={**body, "dataset_id": ds["id"]}
                                         ).json()["id"])
        assert job["status"] == "succeeded", job
        results.append(job["result"])
    a, b = results
    assert a["embedding"]["newly_embedded"] == a["embedding"]["unique"]
    # tenant B's identical rows: nothing from A's caches
    assert b["embedding"]["cached"] == 0 and b["score_cache_hit"] is False


def test_methods_are_listed_with_the_bounds_post_checks(service):
    c = service.client()
    assert service.client(None).get("/v1/methods").status_code == 401
    listed = {m["name"]: m for m in c.get("/v1/methods").json()["data"]}
    from isa.select import METHODS

    assert set(listed) == set(METHODS)
    params = {p["name"]: p for p in listed["isa"]["params"]}
    assert params["n_components"] == {"name": "n_components", "default": 2, "type": "int",
                                      "bounds": {"minimum": 1, "maximum": 64}}
    assert params["pca_components"]["type"] == "int | None"


def test_a_very_long_file_name_gets_an_error_that_says_so(service):
    c = service.client()
    before = c.get("/v1/datasets").json()["count"]
    r = c.post("/v1/datasets", files={"file": ("a" * 5000 + ".jsonl", b'{"prompt": "p"}\n')})
    assert r.status_code == 400
    error = r.json()["error"]
    assert error["code"] == "invalid_multipart" and "file name" in error["message"]
    assert error["details"]["limit"] == 4224
    assert c.get("/v1/datasets").json()["count"] == before
    # a long name within the limit is kept, cut to 255 characters in the record
    ok = c.post("/v1/datasets", files={"file": ("b" * 3000 + ".jsonl", b'{"prompt": "p"}\n')})
    assert ok.status_code == 201 and len(ok.json()["filename"]) == 255


def test_a_gzip_of_newlines_is_refused_in_seconds_naming_the_line(service, tmp_path):
    c = service.client()
    path = tmp_path / "newlines.jsonl.gz"
    with gzip.open(path, "wb", compresslevel=9) as fh:
        fh.write(json.dumps(read_rows(ALPACA_SAMPLE, 1)[0]).encode() + b"\n")
        for _ in range(64):  # 64 MiB of newlines in ~64 KB
            fh.write(b"\n" * (1 << 20))
    t0 = time.monotonic()
    ds = service.wait_dataset(c, service.upload(c, path)["id"], timeout=60)
    assert ds["status"] == "invalid", ds
    assert ds["error"]["code"] == "too_much_blank_space", ds["error"]
    assert "line" in ds["error"]["message"]
    assert time.monotonic() - t0 < 30


def test_metrics_without_a_key_are_not_served_through_a_proxy(service):
    # a reverse proxy on the same host connects from loopback for every outside client
    c = service.client(None)
    assert c.get("/metrics").status_code == 200
    for header in ({"Forwarded": "for=203.0.113.9;proto=https"},
                   {"X-Forwarded-For": "203.0.113.9"}, {"X-Real-IP": "203.0.113.9"}):
        r = c.get("/metrics", headers=header)
        assert r.status_code == 403 and r.json()["error"]["code"] == "forbidden", header


def test_logging_out_of_the_dashboard_ends_the_session_on_the_server(service):
    c = httpx.Client(base_url=service.base_url, follow_redirects=False, timeout=30)
    r = c.post("/ui/login", data={"api_key": "key-a", "next": "/ui"},
               headers={"Origin": service.base_url})
    assert r.status_code == 303, r.text
    token = r.cookies["isa_ui_session"]
    assert c.get("/ui").status_code == 200
    assert c.post("/ui/logout", headers={"Origin": service.base_url}).status_code == 303
    # a copy of the cookie (another tab, a stolen one) no longer opens a page
    copy = httpx.Client(base_url=service.base_url, follow_redirects=False, timeout=30,
                        cookies={"isa_ui_session": token})
    r = copy.get("/ui")
    assert r.status_code == 303 and r.headers["location"].startswith("/ui/login")
    # a new login at once is a new session (not the revoked token again), and it works
    again = c.post("/ui/login", data={"api_key": "key-a", "next": "/ui"},
                   headers={"Origin": service.base_url})
    assert again.status_code == 303 and again.cookies["isa_ui_session"] != token
    assert c.get("/ui").status_code == 200
