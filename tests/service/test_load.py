"""A short load run against the real gateway: many concurrent pollers, no errors
(bench/faults.py runs the long version, 300 pollers)."""

from __future__ import annotations

import asyncio

from tests.conftest import ALPACA_SAMPLE, read_rows, write_jsonl
from tests.service.harness import poll_concurrently


def test_a_hundred_concurrent_pollers_get_no_errors(service, tmp_path):
    c = service.client()
    ds = service.wait_dataset(c, service.upload(c, write_jsonl(
        tmp_path / "p.jsonl", read_rows(ALPACA_SAMPLE, 20)))["id"])
    job = service.wait_job(c, c.post("/v1/jobs", json={
        "type": "select", "dataset_id": ds["id"], "method": "random",
        "budget": {"count": 2}}).json()["id"])
    latencies, statuses = asyncio.run(poll_concurrently(service.base_url,
                                                        f"/v1/jobs/{job['id']}", 100, 3.0))
    assert statuses == {200: len(latencies)}, statuses
    assert len(latencies) > 100
