"""The production start (``python -m app.serve``): several gateway processes on one port,
their HTTP metrics summed over all of them."""

from __future__ import annotations

import json
import re
import uuid

import httpx
import pytest
import redis

from core.records import JobStore, new_id
from tests.conftest import TEST_REDIS_URL
from tests.service.harness import production_gateway


@pytest.fixture()
def gateway(tmp_path):
    prefix = f"isa-gw-{uuid.uuid4().hex[:8]}:"
    env = {"ISA_REDIS_URL": TEST_REDIS_URL, "ISA_KEY_PREFIX": prefix,
           "ISA_DATA_DIR": str(tmp_path), "ISA_API_KEYS": json.dumps({"key-a": "a"}),
           "ISA_API_LOG_LEVEL": "warning",
           "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "metrics")}
    (tmp_path / "metrics").mkdir()
    (tmp_path / "metrics" / "stale.db").write_bytes(b"from an earlier run")
    with production_gateway(tmp_path, env, workers=2) as port:
        yield f"http://127.0.0.1:{port}", prefix, tmp_path
    r = redis.Redis.from_url(TEST_REDIS_URL)
    for key in r.scan_iter(f"{prefix}*"):
        r.delete(key)


def _children(pid_file_dir) -> set[str]:  # noqa: ANN001
    return {p.name for p in pid_file_dir.iterdir() if p.suffix == ".db"}


def test_two_processes_serve_one_port_and_metrics_sum_both(gateway):
    base, prefix, folder = gateway
    store = JobStore(redis.Redis.from_url(TEST_REDIS_URL, decode_responses=True), prefix)
    job_id = new_id("job")
    store.create("a", job_id, "queued", {"type": "select", "request": {}, "stage": "queued"})
    n = 200
    with httpx.Client(base_url=base, headers={"X-API-Key": "key-a"}, timeout=30,
                      limits=httpx.Limits(max_keepalive_connections=0)) as c:
        # a new connection per request: the kernel spreads them over both processes
        for _ in range(n):
            assert c.get(f"/v1/jobs/{job_id}").json()["id"] == job_id
        text = c.get("/metrics").text
    # the stale file of an earlier run was cleared at start; both processes wrote files
    files = _children(folder / "metrics")
    assert "stale.db" not in files
    assert len({re.search(r"_(\d+)\.db$", f).group(1) for f in files}) == 2, files
    served = re.search(r'isa_http_requests_total\{method="GET",route="/v1/jobs/\{job_id\}",'
                       r'status="200"\} (\S+)', text)
    assert served and float(served.group(1)) == n, text[:2000]
