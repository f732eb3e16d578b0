"""Gateway under many pollers: one process against several, measured in one run.

    .venv/bin/python bench/gateway.py [--seconds 10] [--workers 1,2]

Starts the gateway as production does (``python -m app.serve --workers N``) on a Redis
database of its own (default db 12, flushed), with job records written straight to Redis
(no worker: polling reads records only), and loads it with wrk (Debian's package) from
this machine: ``GET /v1/jobs/{id}`` at 50, 300 and 1,000 connections and
``GET /v1/jobs?limit=20`` at 300, a different job per connection's path being no
different for Redis. Prints req/s, p50/p99, errors (non-2xx and socket errors), and each
figure's ratio to the single process; with ``--pools 64,256``, the 1,000-connection row
again for each Redis pool size; writes bench/results/gateway.md.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import httpx
import redis

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
OUT = ROOT / "bench" / "results"
KEY = "bench-key"
LOADS = [("GET /v1/jobs/{id}", "job", 50), ("GET /v1/jobs/{id}", "job", 300),
         ("GET /v1/jobs/{id}", "job", 1000), ("GET /v1/jobs?limit=20", "list", 300)]


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _jobs(redis_url: str, prefix: str, n: int) -> list[str]:
    from core.records import JobStore, new_id

    store = JobStore(redis.Redis.from_url(redis_url, decode_responses=True), prefix)
    ids = []
    for _ in range(n):
        job_id = new_id("job")
        store.create("bench", job_id, "queued", {
            "type": "select", "stage": "queued", "progress_done": 0, "progress_total": 0,
            "request": {"type": "select", "dataset_id": "ds_bench", "method": "isa",
                        "budget": {"fraction": 0.05}}})
        ids.append(job_id)
    return ids


def wrk(url: str, connections: int, seconds: float) -> dict:
    out = subprocess.run(["wrk", "-t2", f"-c{connections}", f"-d{int(seconds)}s", "--latency",
                          "--timeout", "10s", "-H", f"X-API-Key: {KEY}", url],
                         capture_output=True, text=True, check=True).stdout
    pct = dict(re.findall(r"^\s+(50|99)%\s+(\S+)", out, re.M))
    sock = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)",
                     out)
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    failed = int(non2xx.group(1)) if non2xx else 0  # the gateway's 503s
    socket_errors = sum(int(x) for x in sock.groups()) if sock else 0  # timeouts (10 s)
    return {"rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),  # type: ignore[union-attr]
            "p50": pct["50"], "p99": pct["99"], "non2xx": failed,
            "socket_errors": socket_errors, "errors": failed + socket_errors}


def run(workers: int, redis_url: str, seconds: float, log: Path,
        loads: list[tuple[str, str, int]] = LOADS, pool: int | None = None,
        fast_path: bool = True) -> list[dict]:
    prefix = f"isa-bench-{uuid.uuid4().hex[:6]}:"
    job_ids = _jobs(redis_url, prefix, 20)
    port, data = _port(), Path(tempfile.mkdtemp(prefix="isa-gw-"))
    env = {**os.environ, "ISA_REDIS_URL": redis_url, "ISA_KEY_PREFIX": prefix,
           "ISA_DATA_DIR": str(data), "ISA_API_KEYS": json.dumps({KEY: "bench"}),
           "ISA_API_LOG_LEVEL": "warning", "ISA_API_POLL_FAST_PATH": str(fast_path).lower(),
           **({"ISA_REDIS_POOL_SIZE": str(pool)} if pool else {})}
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    with open(log, "ab") as fh:
        api = subprocess.Popen([sys.executable, "-m", "app.serve", "--port", str(port),
                                "--workers", str(workers)], env=env, cwd=ROOT,
                               stdout=fh, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{base}/healthz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert api.poll() is None and time.monotonic() < deadline, log.read_text()[-2000:]
            time.sleep(0.3)
        assert httpx.get(f"{base}/v1/jobs/{job_ids[0]}", headers={"X-API-Key": KEY}
                         ).status_code == 200
        rows = []
        for label, kind, connections in loads:
            url = f"{base}/v1/jobs/{job_ids[0]}" if kind == "job" else f"{base}/v1/jobs?limit=20"
            wrk(url, connections, 2)  # warm every process
            row = {"workers": workers, "fast_path": fast_path, "load": label,
                   "connections": connections,
                   **wrk(url, connections, seconds)}
            print(row, flush=True)
            rows.append(row)
        return rows
    finally:
        api.terminate()
        api.wait(timeout=30)
        shutil.rmtree(data, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=10)
    ap.add_argument("--workers", default="1,2", help="comma-separated process counts")
    ap.add_argument("--redis-url", default="redis://127.0.0.1:6379/12")
    ap.add_argument("--fast-path", default="off,on",
                    help="the polling fast path (app/api/polling.py) off, on, or both")
    ap.add_argument("--pools", default="", help="comma-separated ISA_REDIS_POOL_SIZE values "
                    "to compare at 1,000 connections (one process)")
    args = ap.parse_args()
    if not shutil.which("wrk"):
        raise SystemExit("wrk is needed (apt-get install wrk)")
    redis.Redis.from_url(args.redis_url).flushdb()
    log = Path(tempfile.mkdtemp()) / "api.log"
    counts = [int(x) for x in args.workers.split(",")]
    paths = [x == "on" for x in args.fast_path.split(",")]
    configs = [(n, fp) for n in counts for fp in paths]
    results = {c: run(c[0], args.redis_url, args.seconds, log, fast_path=c[1]) for c in configs}
    base = results[configs[0]]
    lines = ["# Gateway under many pollers (bench/gateway.py)", "",
             f"`python -m app.serve --workers N` on {os.cpu_count()} CPUs, wrk (2 threads) on "
             f"the same machine, {args.seconds:.0f} s per row after a 2 s warm-up; job records "
             "in Redis, no worker. Fast path: `ISA_API_POLL_FAST_PATH` (a successful "
             "`GET /v1/jobs/{id}`, and `GET /v1/jobs` by limit and offset, answered before "
             "FastAPI's routing, `app/api/polling.py`); either way both read Redis on the "
             "event loop over one pipelined connection per process "
             "(`core/redis_pipelined.py`). Ratio: req/s against the first configuration, "
             "same row.",
             "", "| processes | fast path | load | connections | req/s | × first | p50 | p99 "
             "| errors |", "|---|---|---|---|---|---|---|---|---|"]
    for c in configs:
        for row, ref in zip(results[c], base, strict=True):
            lines.append(f"| {c[0]} | {'on' if c[1] else 'off'} | `{row['load']}` | "
                         f"{row['connections']:,} | {row['rps']:,.0f} | "
                         f"{row['rps'] / ref['rps']:.2f} | {row['p50']} | {row['p99']} | "
                         f"{row['errors']:,} |")
    pools = [int(x) for x in args.pools.split(",") if x]
    if pools:
        lines += ["", "Redis pool per gateway process (`ISA_REDIS_POOL_SIZE`), one process, "
                  "1,000 connections: a request that waits longer than 5 s for a pooled "
                  "connection is answered 503; wrk gives up on an answer after 10 s.", "",
                  "| pool | req/s | p50 | p99 | 503s | timeouts |", "|---|---|---|---|---|---|"]
        for size in pools:
            row, = run(1, args.redis_url, args.seconds, log, [LOADS[2]], pool=size)
            lines.append(f"| {size} | {row['rps']:,.0f} | {row['p50']} | {row['p99']} | "
                         f"{row['non2xx']:,} | {row['socket_errors']:,} |")
    lines += ["", f"Regenerate: `.venv/bin/python bench/gateway.py --seconds "
              f"{args.seconds:.0f} --workers {args.workers} --fast-path {args.fast_path}"
              + (f" --pools {args.pools}`" if pools else "`")]
    text = "\n".join(lines) + "\n"
    print(text)
    (OUT / "gateway.md").write_text(text)


if __name__ == "__main__":
    main()
