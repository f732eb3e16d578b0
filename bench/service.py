"""Service benchmark — prints, in one run:

1. a 10k-pair ISA selection job end to end through the service (upload → validate →
   job → subset downloaded) vs. the same selection through the library call
   (``run_selection`` + ``write_subset``), both embedding from scratch: overhead ratio;
2. the cached rerun (same data set and method, another budget) vs. the first run;
3. status polling with 50 concurrent clients: requests/s and p50/p99 latency.

It starts its own worker (one process, as the library call has one) and gateway on a
Redis database of its own (default db 15, flushed).

    .venv/bin/python bench/service.py [--pairs 10000] [--poll-seconds 10]

Install wrk (``apt-get install wrk``) for the polling figure that measures the server.
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from data_dir import add_data_dir, data_file  # noqa: E402  (bench/ is on the path)

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ENCODER = {"name": "sentence", "max_seq_length": 128}


def make_data(pool: Path, path: Path, n: int) -> None:
    rows = []
    with gzip.open(pool, "rt", encoding="utf-8") as fh:
        for line in fh:
            rows.append(line)
    step = max(1, len(rows) // n)  # spread over the pool, not its first rows
    with gzip.open(path, "wt", encoding="utf-8") as out:
        out.writelines(rows[::step][:n])


def library_run(path: Path, out: Path) -> float:
    from isa import (
        Budget,
        PreferenceFile,
        SentenceTransformerEncoder,
        make_method,
        run_selection,
        write_subset,
    )

    t = time.perf_counter()
    data = PreferenceFile(path)
    enc = SentenceTransformerEncoder(max_seq_length=ENCODER["max_seq_length"])
    result = run_selection(data, make_method("isa"), Budget(fraction=0.05), encoder=enc)
    write_subset(data, result, out)
    return time.perf_counter() - t


def service_run(svc, path: Path, budget: float, dataset_id: str | None = None
                ) -> tuple[float, str, dict]:
    c = svc.client()
    t = time.perf_counter()
    if dataset_id is None:
        dataset_id = svc.wait_dataset(c, svc.upload(c, path)["id"])["id"]
    job = c.post("/v1/jobs", json={"type": "select", "dataset_id": dataset_id,
                                   "method": "isa", "budget": {"fraction": budget},
                                   "encoder": ENCODER}).json()
    job = svc.wait_job(c, job["id"], timeout=3600)
    assert job["status"] == "succeeded", job
    body = c.get(job["result"]["files"]["jsonl"]).content
    assert len(body.splitlines()) == job["result"]["rows_selected"]
    return time.perf_counter() - t, dataset_id, job


def poll_wrk(url: str, clients: int, seconds: float) -> str:
    """wrk (Debian package) as the load generator: a Python client on the same 2 cores
    measures itself more than the server (httpx tops out near 250 req/s here)."""
    out = subprocess.run(["wrk", "-t1", f"-c{clients}", f"-d{int(seconds)}s", "--latency",
                          "-H", "X-API-Key: key-a", url], capture_output=True, text=True,
                         check=True).stdout
    rps = re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)  # type: ignore[union-attr]
    pct = dict(re.findall(r"^\s+(50|99)%\s+(\S+)", out, re.M))
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return (f"{float(rps):,.0f} req/s, p50 {pct['50']}, p99 {pct['99']}"
            f"{', non-2xx ' + errors.group(1) if errors else ''} (wrk)")


async def poll(base_url: str, job_id: str, clients: int, seconds: float) -> list[float]:
    latencies: list[float] = []
    deadline = time.perf_counter() + seconds

    async def one(client: httpx.AsyncClient) -> None:
        while time.perf_counter() < deadline:
            t = time.perf_counter()
            r = await client.get(f"/v1/jobs/{job_id}")
            latencies.append(time.perf_counter() - t)
            assert r.status_code == 200

    limits = httpx.Limits(max_connections=clients)
    async with httpx.AsyncClient(base_url=base_url, headers={"X-API-Key": "key-a"},
                                 limits=limits, timeout=30) as client:
        await asyncio.gather(*(one(client) for _ in range(clients)))
    return latencies


def main() -> None:
    from tests.service.harness import running_service

    ap = argparse.ArgumentParser()
    ap.add_argument("--pairs", type=int, default=10_000)
    ap.add_argument("--poll-seconds", type=float, default=10)
    ap.add_argument("--redis", default="redis://127.0.0.1:6379/15")
    add_data_dir(ap)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "pairs.jsonl.gz"
        make_data(data_file(args.data_dir, "alpaca_eval_prefs_train.jsonl.gz"), data,
                  args.pairs)
        print(f"== {args.pairs:,} AlpacaEval pairs, ISA 5%, MiniLM (max 128 tokens), "
              "one worker process")
        lib = library_run(data, Path(tmp) / "lib.jsonl")
        print(f"library call (read, embed, score, select, write): {lib:7.1f} s")
        (Path(tmp) / "svc").mkdir()
        with running_service(args.redis, Path(tmp) / "svc", concurrency=1) as svc:
            first, dataset_id, job = service_run(svc, data, 0.05)
            emb = job["result"]["embedding"]
            print(f"service, first run (upload → download):       {first:7.1f} s "
                  f"(embedded {emb['newly_embedded']:,} distinct of {emb['texts']:,} texts)")
            print(f"overhead ratio service / library: {first / lib:.3f}   (target <= 1.15)")
            again, _, job2 = service_run(svc, data, 0.10, dataset_id)
            print(f"service, cached rerun at 10%:                 {again:7.2f} s "
                  f"(newly embedded {job2['result']['embedding']['newly_embedded']}, "
                  f"score cache hit {job2['result']['score_cache_hit']})")
            print(f"rerun speed-up: {first / again:.0f}x   (target >= 20x)")
            head = f"status polling, 50 concurrent clients, {args.poll_seconds:.0f} s: "
            if shutil.which("wrk"):
                print(head + poll_wrk(f"{svc.base_url}/v1/jobs/{job['id']}", 50,
                                      args.poll_seconds))
            lat = sorted(asyncio.run(poll(svc.base_url, job["id"], 50, args.poll_seconds)))
            p = lambda q: lat[min(len(lat) - 1, int(q * len(lat)))] * 1000  # noqa: E731
            print(head + f"{len(lat) / args.poll_seconds:,.0f} req/s, p50 {p(0.5):.1f} ms, "
                  f"p99 {p(0.99):.1f} ms, mean {statistics.mean(lat) * 1000:.1f} ms "
                  "(httpx AsyncClient in this process)")


if __name__ == "__main__":
    main()
