"""Uploads stream straight into the artifact store, against the production gateway and a
Redis of its own: while the body arrives its bytes are already in the store and nothing
is spooled to the temporary folder (one copy on disk); a refused upload leaves nothing;
a malformed form gets a clear 4xx."""

from __future__ import annotations

import hashlib
import json
import os
import time
import uuid

import httpx
import pytest

from tests.service.harness import RedisServer, production_gateway

KEY = "key-stream"
LIMIT = 3 * 1024 * 1024
BOUNDARY = "isa-test-boundary"


@pytest.fixture(scope="module")
def gateway(tmp_path_factory):
    folder = tmp_path_factory.mktemp("stream")
    (folder / "tmp").mkdir()
    (folder / "redis").mkdir()
    redis_server = RedisServer(folder / "redis", persist=False)
    redis_server.start()
    env = {"ISA_REDIS_URL": redis_server.url, "ISA_KEY_PREFIX": "isa-stream:",
           "ISA_DATA_DIR": str(folder / "data"), "ISA_API_KEYS": json.dumps({KEY: "t"}),
           "ISA_API_LOG_LEVEL": "warning", "ISA_MAX_UPLOAD_BYTES": str(LIMIT),
           # where Starlette's form parser would spool a file part
           "TMPDIR": str(folder / "tmp")}
    try:
        with production_gateway(folder, env) as port:
            yield f"http://127.0.0.1:{port}", folder
    finally:
        redis_server.stop()


def _files(folder, sub: str) -> dict[str, int]:
    root = folder / sub
    return {str(p.relative_to(root)): p.stat().st_size
            for p in root.rglob("*") if p.is_file()} if root.exists() else {}


def _head(name: str = "pairs.jsonl") -> bytes:
    return (f"--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"on_invalid\"\r\n\r\n"
            f"skip\r\n--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"file\"; "
            f"filename=\"{name}\"\r\nContent-Type: application/octet-stream\r\n\r\n").encode()


TAIL = f"\r\n--{BOUNDARY}--\r\n".encode()
HEADERS = {"X-API-Key": KEY, "Content-Type": f"multipart/form-data; boundary={BOUNDARY}"}


def _rows(n_bytes: int) -> bytes:
    row = json.dumps({"prompt": "p " * 20, "chosen": "yes " * 30, "rejected": "no " * 30})
    out = (row + "\n").encode() * (n_bytes // (len(row) + 1))
    return out


def test_an_upload_is_in_the_store_while_it_arrives_and_never_in_tmp(gateway):
    base, folder = gateway
    data = _rows(2 * 1024 * 1024)
    seen: dict[str, dict[str, int]] = {}

    def body():  # chunked: no Content-Length, as a streaming client sends it
        yield _head()
        half = len(data) // 2
        for i in range(0, half, 64 * 1024):
            yield data[i:min(i + 64 * 1024, half)]
        time.sleep(1.0)  # the gateway has written what it got
        seen["store"] = _files(folder, "data/artifacts/datasets")
        seen["tmp"] = _files(folder, "tmp")
        yield data[half:]
        yield TAIL

    r = httpx.post(f"{base}/v1/datasets", content=body(), headers=HEADERS, timeout=30)
    assert r.status_code == 201, r.text
    doc = r.json()
    # half-way: a temporary file of the new data set already holds (most of) the half sent
    assert len(seen["store"]) == 1, seen
    (partial, size), = seen["store"].items()
    assert partial.startswith(doc["id"]) and len(data) // 4 < size <= len(data) // 2
    assert seen["tmp"] == {}
    # done: the one file, whole, under its final name; still nothing in the temp folder
    assert _files(folder, "data/artifacts/datasets") == {f"{doc['id']}/data.jsonl": len(data)}
    assert _files(folder, "tmp") == {}
    assert doc["size_bytes"] == len(data) and doc["sha256"] == hashlib.sha256(data).hexdigest()
    assert doc["options"]["on_invalid"] == "skip"


def test_an_upload_over_the_limit_is_refused_while_it_streams_and_leaves_nothing(gateway):
    base, folder = gateway
    before = _files(folder, "data/artifacts/datasets")
    sent = {"bytes": 0}

    def body():
        yield _head()
        chunk = b"x" * (256 * 1024)
        for _ in range(4 * LIMIT // len(chunk)):
            sent["bytes"] += len(chunk)
            yield chunk
        yield TAIL

    try:
        r = httpx.post(f"{base}/v1/datasets", content=body(), headers=HEADERS, timeout=30)
    except httpx.HTTPError:  # the gateway may close the connection as it answers
        r = None
    if r is not None:
        assert r.status_code == 413 and r.json()["error"]["code"] == "upload_too_large"
    assert _files(folder, "data/artifacts/datasets") == before
    assert _files(folder, "tmp") == {}
    listed = httpx.get(f"{base}/v1/datasets", headers={"X-API-Key": KEY}).json()
    assert all(d["size_bytes"] <= LIMIT for d in listed["data"])


@pytest.mark.parametrize(("body", "content_type", "status", "code", "field"), [
    # no file part at all
    (f"--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"shape\"\r\n\r\nstandard"
     f"\r\n--{BOUNDARY}--\r\n", f"multipart/form-data; boundary={BOUNDARY}", 422,
     "validation_error", "body.file"),
    # not a form
    ('{"prompt": "p"}', "application/json", 400, "invalid_multipart", None),
    # a form without its boundary
    ("x", "multipart/form-data", 400, "invalid_multipart", None),
    # a choice outside its schema, named by its field
    (_head().decode() + "{}" + f"\r\n--{BOUNDARY}\r\nContent-Disposition: form-data; "
     f"name=\"format\"\r\n\r\nxml\r\n--{BOUNDARY}--\r\n",
     f"multipart/form-data; boundary={BOUNDARY}", 422, "validation_error", "body.format"),
    # two files
    (_head().decode() + "{}\r\n" + _head("b.jsonl").decode().split("\r\n", 4)[-1] + "{}"
     + TAIL.decode(), f"multipart/form-data; boundary={BOUNDARY}", 422, "invalid_options",
     "file"),
    # a file under another name
    (_head().decode().replace('name="file"', 'name="data"') + "{}" + TAIL.decode(),
     f"multipart/form-data; boundary={BOUNDARY}", 422, "invalid_options", "data"),
    # cut short: no closing boundary (the file must not be kept as if whole)
    (_head().decode() + '{"prompt": "p", "chosen": "a", "rejected": "b"}\n{"prompt": "p2',
     f"multipart/form-data; boundary={BOUNDARY}", 400, "invalid_multipart", None),
    # a boundary longer than the parser takes
    ("x", "multipart/form-data; boundary=" + "b" * 300, 400, "invalid_multipart", None),
])
def test_a_malformed_upload_form_is_a_clear_4xx_and_stores_nothing(gateway, body,
                                                                  content_type, status,
                                                                  code, field):
    base, folder = gateway
    before = _files(folder, "data/artifacts/datasets")
    r = httpx.post(f"{base}/v1/datasets", content=body.encode(),
                   headers={"X-API-Key": KEY, "Content-Type": content_type}, timeout=30)
    assert r.status_code == status, r.text
    error = r.json()["error"]
    assert error["code"] == code
    if code == "validation_error":
        assert error["details"]["errors"][0]["field"] == field
    elif field is not None:
        assert error["details"]["field"] == field
    assert _files(folder, "data/artifacts/datasets") == before


def test_the_python_client_and_curl_style_forms_still_upload(gateway, tmp_path):
    base, folder = gateway
    path = tmp_path / "pairs.jsonl.gz"
    import gzip

    path.write_bytes(gzip.compress(_rows(100_000)))
    with httpx.Client(base_url=base, headers={"X-API-Key": KEY}) as c, open(path, "rb") as fh:
        r = c.post("/v1/datasets", files={"file": (path.name, fh)},
                   data={"shape": "standard", "column_map": json.dumps({"q": "prompt"})},
                   headers={"Idempotency-Key": uuid.uuid4().hex})
    assert r.status_code == 201, r.text
    doc = r.json()
    assert doc["filename"] == "pairs.jsonl.gz" and doc["size_bytes"] == path.stat().st_size
    assert doc["options"]["column_map"] == {"q": "prompt"}
    assert f"{doc['id']}/data.jsonl.gz" in _files(folder, "data/artifacts/datasets")
    assert os.listdir(folder / "tmp") == []
