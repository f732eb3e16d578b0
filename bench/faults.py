"""Faults and load with real processes, the long versions of tests/service/test_faults.py
and test_load.py: a worker SIGKILLed mid-job, Redis restarted mid-job, hundreds of
concurrent pollers, and a worker SIGKILLed mid-chunk while a second worker runs the same
job's other chunks (never restarted). Prints each figure beside the bound the README
promises and writes bench/results/faults.md.

    .venv/bin/python bench/faults.py [--pairs 3000] [--pollers 300] [--seconds 10]
    .venv/bin/python bench/faults.py --only two-workers   # that scenario alone, printed
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import json
import os
import random
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from data_dir import add_data_dir, data_file  # noqa: E402  (bench/ is on the path)

os.environ.setdefault("HF_HUB_OFFLINE", "1")
OUT = ROOT / "bench" / "results"
SUPERVISION = {"ISA_HEARTBEAT_INTERVAL_S": "2", "ISA_STALE_AFTER_S": "15",
               "ISA_SUPERVISE_EVERY_S": "5", "ISA_EMBED_CHUNK_SIZE": "512"}


def make_data(pool: Path, out: Path, n: int) -> None:
    with gzip.open(pool, "rt", encoding="utf-8") as fh:
        rows = random.Random(0).sample(fh.readlines(), n)
    with gzip.open(out, "wt", encoding="utf-8") as fh:
        fh.writelines(rows)


def two_workers(redis_url: str, folder: Path, data: Path) -> str:
    """Scenario 4: two worker processes (one slot each) share a job's embedding chunks;
    one is SIGKILLed mid-chunk and not restarted. Its chunk should be sent again alone
    once its beat is stale (within stale + supervise), while the other worker's chunks
    run, and the survivor should finish the job."""
    from tests.service.harness import kill_worker_mid_chunk, running_service

    stale, every = float(SUPERVISION["ISA_STALE_AFTER_S"]), \
        float(SUPERVISION["ISA_SUPERVISE_EVERY_S"])
    beat = float(SUPERVISION["ISA_HEARTBEAT_INTERVAL_S"])
    folder.mkdir()
    with running_service(redis_url, folder, concurrency=1, extra_env=SUPERVISION) as svc:
        svc.start_named_worker("survivor", concurrency=1)
        c = svc.client()
        job_id = svc.select_while_embedding(c, data, max_seq_length=128)
        seen = kill_worker_mid_chunk(svc, c, job_id, timeout=3600, poll_s=0.2,
                                     fresh_s=2 * beat + 1)
    doc = seen.job
    resend = "never" if seen.resend_after_s is None else f"{seen.resend_after_s:.1f} s"
    after = {n: v - seen.workers_at_kill.get(n, 0) for n, v in seen.workers_at_end.items()}
    return (f"| worker SIGKILLed mid-chunk while a second worker runs its siblings, not "
            f"restarted | re-sent within stale + supervise = {stale + every:g} s | chunk "
            f"{seen.killed_part} re-sent {resend} after the kill, "
            f"{len(seen.siblings_at_resend)} sibling(s) beating, {seen.pending_at_resend} "
            f"of {seen.parts} chunks pending; {seen.done_after_s:.0f} s from the kill to "
            f"{doc.get('status')} | chunks finished after the kill per worker "
            f"{json.dumps(after)}; job sent again {doc.get('attempts')} time(s), "
            f"{(doc.get('result') or {}).get('rows_selected')} rows |")


def main() -> None:
    from tests.service.harness import poll_concurrently, running_service

    ap = argparse.ArgumentParser()
    ap.add_argument("--pairs", type=int, default=3000)
    ap.add_argument("--pollers", type=int, default=300)
    ap.add_argument("--seconds", type=float, default=10)
    ap.add_argument("--only", choices=["two-workers"],
                    help="run that scenario alone and print it (faults.md is kept)")
    add_data_dir(ap)
    args = ap.parse_args()
    if args.only:
        only(args)
        return
    lines = ["# Faults and load (bench/faults.py)", "",
             f"Supervision: heartbeat {SUPERVISION['ISA_HEARTBEAT_INTERVAL_S']} s, stale after "
             f"{SUPERVISION['ISA_STALE_AFTER_S']} s, supervisor every "
             f"{SUPERVISION['ISA_SUPERVISE_EVERY_S']} s. Data: {args.pairs:,} AlpacaEval pairs, "
             "ISA 5%, MiniLM, one worker process (two in the last scenario).", "",
             "| scenario | bound | measured | outcome |", "|---|---|---|---|"]
    with _workspace(args, persist=True) as (tmp_path, data, server):
        (tmp_path / "svc").mkdir()
        try:
            with running_service(server.url, tmp_path / "svc", concurrency=1,
                                 extra_env=SUPERVISION) as svc:
                c = svc.client()
                # 1. the worker's whole process group SIGKILLed mid-embedding
                job_id = svc.select_while_embedding(c, data, max_seq_length=128)
                svc.kill_worker()
                t = time.monotonic()
                svc.start_worker()
                doc = svc.wait_job(c, job_id, timeout=1800)
                took = time.monotonic() - t
                lines.append(f"| worker SIGKILLed mid-job, a new one started | stale + "
                             f"supervise + the job's own time | {took:.0f} s to "
                             f"{doc['status']} | sent again {doc['attempts']} time(s), "
                             f"progress {doc['progress']['done']}/{doc['progress']['total']} |")
                print(lines[-1], flush=True)
                # 2. Redis stopped for 5 s mid-job, then restarted
                job_id = svc.select_while_embedding(c, data, max_seq_length=120)
                server.stop()
                down = c.get(f"/v1/jobs/{job_id}")
                t = time.monotonic()
                time.sleep(5)
                server.start()
                doc = svc.wait_job(c, job_id, timeout=1800)
                took = time.monotonic() - t
                lines.append(f"| Redis down 5 s mid-job | API 503 + Retry-After meanwhile; "
                             f"the job ends | API answered {down.status_code} "
                             f"(Retry-After {down.headers.get('retry-after')}); job "
                             f"{doc['status']} {took:.0f} s after the restart | "
                             f"{doc.get('error') or 'result kept'} |")
                print(lines[-1], flush=True)
                # 3. concurrent pollers on one job
                lat, statuses = asyncio.run(poll_concurrently(
                    svc.base_url, f"/v1/jobs/{job_id}", args.pollers, args.seconds))
                lat.sort()
                p = lambda q: lat[min(len(lat) - 1, int(q * len(lat)))] * 1000  # noqa: E731
                errors = sum(n for s, n in statuses.items() if s != 200)
                lines.append(f"| {args.pollers} concurrent pollers, {args.seconds:g} s | 0 "
                             f"errors | {len(lat) / args.seconds:,.0f} req/s, p50 "
                             f"{p(0.5):.0f} ms, p99 {p(0.99):.0f} ms, {errors} errors | "
                             f"{json.dumps(statuses)} |")
                print(lines[-1], flush=True)
            # 4. one of two workers SIGKILLed mid-chunk, its siblings running on the other
            lines.append(two_workers(server.url, tmp_path / "svc-two", data))
            print(lines[-1], flush=True)
        finally:
            if server.proc is not None and server.proc.poll() is None:
                server.stop()
    lines += ["", "The load generator is Python (httpx) on the same 2 cores as the service: "
              "it measures itself as much as the gateway.", "",
              "The rest of the fault and load figures: hostile uploads (worker seconds and "
              "peak memory) in `hostile_uploads.md` (bench/hostile_uploads.py); 1,000 pollers "
              "with wrk, and Redis pool sizes, in `gateway.md` (bench/gateway.py --pools); "
              "slow clients (header and body timeouts, the half-open cap) are "
              "tests/service/test_slow_clients.py.", "",
              f"Regenerate: `.venv/bin/python bench/faults.py --pairs {args.pairs} --pollers "
              f"{args.pollers} --seconds {args.seconds:g}`", ""]
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "faults.md").write_text("\n".join(lines))
    print("\n".join(lines))


@contextmanager
def _workspace(args: argparse.Namespace, *, persist: bool) -> Iterator[tuple[Path, Path, Any]]:
    """A temporary folder with the sampled pairs and a started Redis server of its own."""
    from tests.service.harness import RedisServer

    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        data = tmp_path / "pairs.jsonl.gz"
        make_data(data_file(args.data_dir, "alpaca_eval_prefs_train.jsonl.gz"), data,
                  args.pairs)
        (tmp_path / "redis").mkdir()
        server = RedisServer(tmp_path / "redis", persist=persist)
        server.start()
        yield tmp_path, data, server


def only(args: argparse.Namespace) -> None:
    """One scenario alone, on a Redis server of its own; printed, not written."""
    with _workspace(args, persist=False) as (tmp_path, data, server):
        try:
            print(f"Supervision: {json.dumps(SUPERVISION)}; {args.pairs:,} pairs\n"
                  "| scenario | bound | measured | outcome |\n|---|---|---|---|", flush=True)
            print(two_workers(server.url, tmp_path / "svc", data), flush=True)
        finally:
            if server.proc is not None and server.proc.poll() is None:
                server.stop()


if __name__ == "__main__":
    main()
