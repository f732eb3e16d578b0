"""Data sets imported from object storage: a real local S3-compatible server process
(moto) and a loopback web server as sources; only the locations the server allows; the
upload limits; nothing half-read left behind."""

from __future__ import annotations

import hashlib
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from tests.conftest import HH_SAMPLE
from tests.service.conftest import IMPORT_BUCKET, MAX_UPLOAD


def _import(c, url: str, **options):
    return c.post("/v1/datasets/import", json={"url": url, **options})


def _wait_dataset(service, c, dataset_id: str) -> dict:
    return service.wait_dataset(c, dataset_id, timeout=120)


def test_an_s3_object_becomes_a_validated_data_set(service, s3):
    body = HH_SAMPLE.read_bytes()
    s3.client().put_object(Bucket=IMPORT_BUCKET, Key="allowed/hh.jsonl.gz", Body=body)
    c = service.client("key-a")
    r = _import(c, f"s3://{IMPORT_BUCKET}/allowed/hh.jsonl.gz")
    assert r.status_code == 201, r.text
    assert r.json()["source_url"] == f"s3://{IMPORT_BUCKET}/allowed/hh.jsonl.gz"
    ds = _wait_dataset(service, c, r.json()["id"])
    assert (ds["status"], ds["shape"], ds["rows_valid"]) == ("ready", "hh_raw", 600), ds
    assert ds["size_bytes"] == len(body) and ds["sha256"] == hashlib.sha256(body).hexdigest()
    assert ds["filename"] == "hh.jsonl.gz"
    # the imported data set is like any other: a job runs on it
    job = c.post("/v1/jobs", json={"type": "select", "dataset_id": ds["id"],
                                   "method": "random", "budget": {"count": 4}}).json()
    assert service.wait_job(c, job["id"])["result"]["rows_selected"] == 4


@pytest.mark.parametrize("url", [
    f"s3://{IMPORT_BUCKET}/secret/hh.jsonl.gz",          # outside the allowed folder
    f"s3://{IMPORT_BUCKET}/allowed/../secret/x.jsonl",   # climbing out of it
    "s3://another-bucket/allowed/x.jsonl", "file:///etc/passwd",
    "http://169.254.169.254/latest/meta-data",           # not allowed, and not public
    "s3://[allowed/x.jsonl", "horS://\u0096=W[\u000e",     # not URLs (unbalanced "[")
])
def test_locations_the_server_does_not_allow_are_refused(service, url):
    r = _import(service.client("key-a"), url)
    assert r.status_code == 422 and r.json()["error"]["code"] == "import_not_allowed", r.text


def test_a_missing_object_or_one_over_the_limit_fails_cleanly(service, s3):
    c = service.client("key-a")
    missing = _wait_dataset(service, c, _import(
        c, f"s3://{IMPORT_BUCKET}/allowed/nothing-here.jsonl").json()["id"])
    assert missing["status"] == "invalid" and missing["error"]["code"] == "import_failed"

    s3.client().put_object(Bucket=IMPORT_BUCKET, Key="allowed/big.jsonl",
                           Body=b'{"prompt": "p", "chosen": "a", "rejected": "b"}\n' *
                           (MAX_UPLOAD // 40))
    big = _wait_dataset(service, c, _import(c, f"s3://{IMPORT_BUCKET}/allowed/big.jsonl")
                        .json()["id"])
    assert big["status"] == "invalid" and big["error"]["code"] == "upload_too_large"
    assert not list((service.data_dir / "artifacts" / "datasets").glob(f"{big['id']}*"))


class _Web:
    """A loopback web server: /hh.jsonl.gz serves the sample, /moved redirects to the
    cloud metadata address (an import must not follow it)."""

    def __init__(self) -> None:
        body = HH_SAMPLE.read_bytes()

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802
                if self.path == "/moved":
                    self.send_response(302)
                    self.send_header("Location", "http://169.254.169.254/latest/")
                    self.end_headers()
                    return
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


def test_an_https_import_and_a_redirect_that_is_not_followed(service):
    web = _Web()
    try:
        c = service.client("key-b")
        ok = _wait_dataset(service, c, _import(c, f"{web.url}/hh.jsonl.gz").json()["id"])
        assert ok["status"] == "ready" and ok["rows_valid"] == 600
        moved = _wait_dataset(service, c, _import(c, f"{web.url}/moved").json()["id"])
        assert moved["status"] == "invalid" and moved["error"]["code"] == "import_failed"
        assert "302" in moved["error"]["message"]
    finally:
        web.server.shutdown()
