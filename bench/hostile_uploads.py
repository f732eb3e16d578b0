"""Two hostile uploads against a service started as the README starts it (one worker
process): what each costs the worker, in seconds and peak resident memory.

1. a gzip of nothing but newlines (``--newline-gib`` GiB inflated, a few MB on the wire):
   blank lines count toward the file's budget, so validation refuses it early;
2. a valid upload of huge fields (``--rows`` rows, each text ``--field-chars`` characters,
   within ``ISA_MAX_FIELD_CHARS``; 180 MB by default), validated and then selected with
   ISA: texts are cut to what the encoder reads before tokenising.

Prints each figure and writes bench/results/hostile_uploads.md.

    .venv/bin/python bench/hostile_uploads.py [--newline-gib 4] [--rows 60] [--field-chars 1000000]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
import threading
import time
import zlib
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
OUT = ROOT / "bench" / "results"


class PeakRss:
    """The largest resident memory of a process and its children, sampled every 50 ms."""

    def __init__(self, pid: int) -> None:
        self.proc, self.peak, self._stop = psutil.Process(pid), 0, threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                procs = [self.proc, *self.proc.children(recursive=True)]
                # the task runs in one child: its own peak is what a task costs
                self.peak = max(self.peak, *(p.memory_info().rss for p in procs))
            except psutil.Error:
                pass
            time.sleep(0.05)

    def __enter__(self) -> PeakRss:
        self.peak = 0
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()

    @property
    def mib(self) -> float:
        return self.peak / 2 ** 20


def newline_gzip(path: Path, gib: float) -> None:
    block = b"\n" * (64 * 2 ** 20)
    z = zlib.compressobj(9, zlib.DEFLATED, 31)  # gzip framing
    with open(path, "wb") as fh:
        for _ in range(int(gib * 16)):
            fh.write(z.compress(block))
        fh.write(z.flush())


def huge_rows(path: Path, rows: int, chars: int) -> None:
    rng = random.Random(0)
    words = [f"w{rng.randrange(50_000)}" for _ in range(chars // 4)]
    base = " ".join(words)[:chars - 16]
    with open(path, "w", encoding="utf-8") as fh:
        for i in range(rows):
            fh.write(json.dumps({"prompt": f"q{i} " + base, "chosen": f"a{i} " + base,
                                 "rejected": f"b{i} " + base}) + "\n")


def main() -> None:
    from tests.service.harness import RedisServer, running_service

    ap = argparse.ArgumentParser()
    ap.add_argument("--newline-gib", type=float, default=4)
    ap.add_argument("--rows", type=int, default=60)
    ap.add_argument("--field-chars", type=int, default=1_000_000)
    args = ap.parse_args()
    lines = ["# Hostile uploads (bench/hostile_uploads.py)", "",
             "A service as the README starts it, one worker process (concurrency 1), on "
             f"{os.cpu_count()} CPUs. Peak: the largest resident memory of any worker "
             "process while the work ran.", "",
             "| upload | on the wire | worker seconds | peak worker MiB | outcome |",
             "|---|---|---|---|---|"]
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        (tmp_path / "redis").mkdir()
        server = RedisServer(tmp_path / "redis", persist=False)
        server.start()
        (tmp_path / "svc").mkdir()
        try:
            with running_service(server.url, tmp_path / "svc", concurrency=1) as svc:
                c = svc.client()
                assert svc.worker is not None
                rss = PeakRss(svc.worker.pid)
                # 1. newlines
                blank = tmp_path / "blank.jsonl.gz"
                newline_gzip(blank, args.newline_gib)
                with rss:
                    ds = svc.upload(c, blank)
                    t = time.monotonic()
                    ds = svc.wait_dataset(c, ds["id"], timeout=3600)
                    took = time.monotonic() - t
                error = ds.get("error") or {}
                lines.append(f"| gzip of {args.newline_gib:g} GiB of newlines | "
                             f"{blank.stat().st_size / 2 ** 20:.1f} MiB | {took:.1f} s to "
                             f"{ds['status']} | {rss.mib:,.0f} | `{error.get('code')}`: "
                             f"{str(error.get('message'))[:120]} |")
                print(lines[-1], flush=True)
                # 2. huge fields, valid
                huge = tmp_path / "huge.jsonl"
                huge_rows(huge, args.rows, args.field_chars)
                with rss:
                    ds = svc.upload(c, huge)
                    t = time.monotonic()
                    ds = svc.wait_dataset(c, ds["id"], timeout=3600)
                    validated = time.monotonic() - t
                lines.append(f"| {args.rows} rows, each text {args.field_chars:,} chars "
                             f"(validation) | {huge.stat().st_size / 2 ** 20:.0f} MiB | "
                             f"{validated:.1f} s to {ds['status']} | {rss.mib:,.0f} | "
                             f"{ds.get('rows_valid')} rows valid |")
                print(lines[-1], flush=True)
                with rss:
                    r = c.post("/v1/jobs", json={
                        "type": "select", "dataset_id": ds["id"], "method": "isa",
                        "budget": {"count": max(2, args.rows // 10)}})
                    assert r.status_code == 201, r.text
                    t = time.monotonic()
                    job = svc.wait_job(c, r.json()["id"], timeout=3600)
                    took = time.monotonic() - t
                lines.append(f"| the same, ISA select job (MiniLM, its 256-token window) | "
                             f"— | {took:.1f} s to {job['status']} | {rss.mib:,.0f} | "
                             f"{(job.get('result') or {}).get('rows_selected')} rows kept "
                             f"{job.get('error') or ''} |")
                print(lines[-1], flush=True)
        finally:
            server.stop()
    lines += ["", "Before the cost bounds (issue 21): the 4 GiB newline gzip held the worker "
              "153 s before decompression_limit; the 180 MB upload took a select job 843 s "
              "and peaked at 7,045 MiB.", "",
              f"Regenerate: `.venv/bin/python bench/hostile_uploads.py --newline-gib "
              f"{args.newline_gib:g} --rows {args.rows} --field-chars {args.field_chars}`", ""]
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "hostile_uploads.md").write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
