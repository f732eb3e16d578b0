"""The review pages on a 42k-row data set (AlpacaEval train, 42,035 pairs), against a
service started as the README starts it (one worker): how long a page takes at its first
and its last offset, searched and sorted, beside what the same view cost before the row
index (the source file read from its start, in-process: the old code path).

Uploads the file, waits for validation (which writes the row index), runs two random 5%
select jobs (no encoder: the bench is about the pages), logs in to the dashboard and
times each page (median of ``--repeat`` requests, after one warm-up).

    .venv/bin/python bench/review_pages.py [--repeat 5]

Prints a table and writes bench/results/review_pages.md.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from data_dir import add_data_dir, data_file  # noqa: E402  (bench/ is on the path)

os.environ.setdefault("HF_HUB_OFFLINE", "1")
OUT = ROOT / "bench" / "results"
PAGE = 50


def _median_s(call, repeat: int) -> float:
    call()  # warm-up: the OS page cache, the first import
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        call()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def _get(c: httpx.Client, url: str, **params) -> None:
    r = c.get(url, params=params)
    assert r.status_code == 200, (url, r.status_code, r.text[:300])


def _scan_preview(ds: dict, data_dir: Path, offset: int, limit: int) -> None:
    """The old preview: the file read through the library from its start."""
    from core.artifacts import ArtifactStore
    from core.contract import open_dataset
    from core.settings import Settings

    settings = Settings(data_dir=data_dir)
    artifacts = ArtifactStore(str(data_dir / "artifacts"))
    got = 0
    for i, _ in enumerate(open_dataset(ds, artifacts, settings)):
        if i >= offset:
            got += 1
            if got == limit:
                break


def _scan_subset_page(ds: dict, data_dir: Path, row_ids: set[str]) -> None:
    """The old subset page: the file read until every row id of the page was found."""
    from core.artifacts import ArtifactStore
    from core.contract import open_dataset
    from core.settings import Settings

    settings = Settings(data_dir=data_dir)
    artifacts = ArtifactStore(str(data_dir / "artifacts"))
    left = set(row_ids)
    for ex in open_dataset(ds, artifacts, settings):
        left.discard(ex.row_id)
        if not left:
            break


def main() -> None:
    import io

    import pyarrow.parquet as pq

    from tests.service.harness import RedisServer, running_service

    ap = argparse.ArgumentParser()
    add_data_dir(ap)
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    pool = data_file(args.data_dir, "alpaca_eval_prefs_train.jsonl.gz")
    rows: list[tuple[str, float, str]] = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        redis = RedisServer(folder, persist=False)
        redis.start()
        data = folder / "svc"
        data.mkdir()
        try:
            with running_service(redis.url, data, concurrency=1) as svc:
                c = svc.client()
                t = time.perf_counter()
                ds = svc.wait_dataset(c, svc.upload(c, pool)["id"], timeout=1800)
                validate_s = time.perf_counter() - t
                assert ds["status"] == "ready", ds
                n = ds["rows_valid"]
                jobs = []
                for seed in (0, 1):
                    r = c.post("/v1/jobs", json={"type": "select", "dataset_id": ds["id"],
                                                 "method": "random", "seed": seed,
                                                 "budget": {"fraction": 0.05}})
                    assert r.status_code == 201, r.text
                    jobs.append(svc.wait_job(c, r.json()["id"], timeout=1800)["id"])
                a, b = jobs
                scores = pq.read_table(io.BytesIO(c.get(f"/v1/jobs/{a}/scores").content))
                kept = [r["row_id"] for r in sorted(scores.to_pylist(),
                                                    key=lambda r: r["rank"]) if r["selected"]]
                ui = httpx.Client(base_url=svc.base_url, timeout=120, follow_redirects=False)
                login = ui.post("/ui/login", data={"api_key": "key-a", "next": "/ui"},
                                headers={"Origin": svc.base_url})
                assert login.status_code == 303, login.text
                last_kept = -(-len(kept) // PAGE)
                last_dropped = -(-(n - len(kept)) // PAGE)
                views = [
                    ("subset page 1 (kept, by rank)", f"/ui/jobs/{a}", {}),
                    (f"subset last page ({last_kept}, kept)", f"/ui/jobs/{a}",
                     {"page": last_kept}),
                    (f"dropped, last page ({last_dropped})", f"/ui/jobs/{a}",
                     {"view": "dropped", "page": last_dropped}),
                    ("all, longest first, page 1", f"/ui/jobs/{a}",
                     {"view": "all", "sort": "-length"}),
                    ("all, searched ('python'), page 1", f"/ui/jobs/{a}",
                     {"view": "all", "q": "python"}),
                    ("all, column judge = a value, page 1", f"/ui/jobs/{a}",
                     {"view": "all", "column": "judge",
                      "value": "alpaca_eval_gpt4"}),
                    ("compare two jobs", f"/ui/jobs/{a}/compare", {"other": b}),
                    ("rows page 1", f"/ui/datasets/{ds['id']}/rows", {}),
                    (f"rows last page ({-(-n // PAGE)})", f"/ui/datasets/{ds['id']}/rows",
                     {"page": -(-n // PAGE)}),
                ]
                for name, url, params in views:
                    rows.append((name, _median_s(lambda u=url, p=params: _get(ui, u, **p),
                                                 args.repeat), "dashboard"))
                for offset in (0, n - 20):
                    rows.append((f"GET /v1/datasets/{{id}}/rows offset {offset:,}",
                                 _median_s(lambda o=offset: _get(
                                     c, f"/v1/datasets/{ds['id']}/rows", offset=o,
                                     limit=20), args.repeat), "API"))
                # the old code paths, on the same file and settings, in this process
                full = c.get(f"/v1/datasets/{ds['id']}").json()
                full["artifact"] = upload_key(full)
                rows.append((f"before: preview offset {n - 20:,} (file read from its start)",
                             _median_s(lambda: _scan_preview(full, data, n - 20, 20), 1),
                             "old path"))
                rows.append(("before: subset page 1 (file read until its 50 rows are found)",
                             _median_s(lambda: _scan_subset_page(full, data,
                                                                 set(kept[:PAGE])), 1),
                             "old path"))
        finally:
            redis.stop()
    new_last = next(s for name, s, _ in rows if name.startswith("GET") and "offset 0" not in name)
    old_last = next(s for name, s, _ in rows if name.startswith("before: preview"))
    new_page = rows[0][1]
    old_page = next(s for name, s, _ in rows if name.startswith("before: subset"))
    lines = [f"# Review pages on a {n:,}-row data set (AlpacaEval train)", "",
             f"One worker, the gateway as the README starts it; validation (which writes the "
             f"row index) took {validate_s:.0f} s. Each figure is the median of "
             f"{args.repeat} requests after a warm-up (the old paths: one run).", "",
             "| view | median | kind |", "| --- | --- | --- |"]
    lines += [f"| {name} | {s * 1000:,.0f} ms | {kind} |" for name, s, kind in rows]
    lines += ["", f"Preview at the last offset: {old_last / new_last:,.0f}× faster than the "
              f"old scan ({old_last:.2f} s → {new_last * 1000:.0f} ms); subset page 1: "
              f"{old_page / new_page:,.1f}× ({old_page:.2f} s → {new_page * 1000:.0f} ms)."]
    text = "\n".join(lines) + "\n"
    print(text)
    (OUT / "review_pages.md").write_text(text)


def upload_key(ds: dict) -> str:
    """The data set's artifact key as the upload route made it (the record's own field is
    not in the public document): its id and the stored suffix of its file name."""
    from app.api.uploads import stored_suffix
    from core.artifacts import Keys

    return Keys.upload(ds["id"], stored_suffix(ds["filename"]))


if __name__ == "__main__":
    main()
