"""ISA 1% over 100k, 1M and 10M pairs *through the service*: upload, validation, the
select job scored as map/reduce by 2 worker processes, the subset downloaded.

    .venv/bin/python bench/scale_service.py [--pairs 100000,1000000,10000000]

The pairs are synthetic (short texts, a Parquet file) and their embeddings are put in the
service's embedding store beforehand (a two-cluster mixture in 384 dimensions, float16
shards, as embedding tasks write them): this measures reading, the index, fitting,
scoring, selecting and writing, not encoding. Everything else is the real service: its
own Redis for job state and one for the embedding index (memory only), the gateway, and
two Celery workers with one process each (as two machines would run them), sharing a
local artifact folder. Scoring tasks take ``--shard-units`` units each.

Printed and written to bench/results/scale_service.md: wall time per step, the time the
job spent in each stage (as a client polling it sees them), the peak RSS of each process,
Redis memory and artifact bytes. bench/scale.py measures the scoring steps alone.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import psutil
import redis

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from tests.service.harness import RedisServer, _worker_command, running_service  # noqa: E402

os.environ.setdefault("HF_HUB_OFFLINE", "1")
OUT = ROOT / "bench" / "results"
DIM = 384
ENCODER = {"name": "sentence"}
TENANT = "tenant-a"


def write_pairs(path: Path, n: int, seed: int = 0) -> None:
    """``n`` distinct synthetic pairs (about 40 characters a text) as Parquet."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(seed)
    with pq.ParquetWriter(path, pa.schema([("id", pa.string()), ("prompt", pa.string()),
                                           ("chosen", pa.string()),
                                           ("rejected", pa.string())])) as out:
        for a in range(0, n, 1_000_000):
            i = np.arange(a, min(a + 1_000_000, n))
            topic = rng.integers(0, 5_000, i.size)
            ids = np.char.add("p", i.astype(str))
            out.write_table(pa.table({
                "id": ids,
                "prompt": np.char.add(np.char.add("question ", i.astype(str)),
                                      np.char.add(" on topic ", topic.astype(str))),
                "chosen": np.char.add("a helpful answer number ", i.astype(str)),
                "rejected": np.char.add("an unhelpful reply, number ", i.astype(str)),
            }))


def precache(path: Path, env: dict[str, str], shard_texts: int) -> dict[str, float]:
    """Every text of the file in the embedding store, as embedding tasks would leave it
    (keys from the service's own reader, so they match what the job asks for)."""
    from core.artifacts import ArtifactStore
    from core.contract import EncoderSpec
    from isa import PreferenceFile
    from isa.embed.factory import make_encoder
    from isa.pipeline import read_units
    from workers.embedding_store import ShardedEmbeddingStore

    t = time.perf_counter()
    units, _ = read_units(PreferenceFile(path, id_field="id"), keep_texts=False)
    keys = units.text_keys
    assert keys is not None
    read_s = time.perf_counter() - t
    name = make_encoder(**EncoderSpec(**ENCODER).options()).name
    store = ShardedEmbeddingStore(redis.Redis.from_url(env["ISA_CACHE_REDIS_URL"]),
                                  ArtifactStore(env["ISA_ARTIFACT_URL"]),
                                  f"{env['ISA_KEY_PREFIX']}t:{TENANT}:", dtype="float16")
    rng = np.random.default_rng(1)
    t = time.perf_counter()
    for a in range(0, len(keys), shard_texts):
        block = keys[a:a + shard_texts]
        cluster = rng.random(len(block)) < 0.3  # two clusters: a mixture to find
        X = rng.standard_normal((len(block), DIM), dtype=np.float32)
        X[cluster] = X[cluster] * 1.6 + 0.4
        store.put_many(name, dict(zip((bytes(k) for k in block), X, strict=True)))
    return {"precache_read_s": read_s, "precache_write_s": time.perf_counter() - t,
            "texts": len(keys)}


def _anon_bytes(pid: int) -> int:
    """Resident anonymous memory (RssAnon): what the process itself holds, without the
    pages of memory-mapped shard files (the kernel's page cache, reclaimable)."""
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith("RssAnon:"):
                return int(line.split()[1]) * 1024
    return 0


class PeakRSS:
    """Samples the resident memory of process trees twice a second; the peak per role
    (the largest single process in that tree): all resident pages (``peak``) and the
    anonymous ones (``anon``)."""

    def __init__(self, roots: dict[str, int]) -> None:
        self.roots, self.peak = roots, dict.fromkeys(roots, 0)
        self.anon = dict.fromkeys(roots, 0)
        #: the job's stage now (set by ``follow``), and per stage the largest anonymous
        #: memory of any worker process while the job was in it
        self.stage, self.by_stage = "", {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            for role, pid in self.roots.items():
                try:
                    root = psutil.Process(pid)
                    for p in [root, *root.children(recursive=True)]:
                        self.peak[role] = max(self.peak[role], p.memory_info().rss)
                        anon = _anon_bytes(p.pid)
                        self.anon[role] = max(self.anon[role], anon)
                        if role.startswith("worker") and self.stage:
                            self.by_stage[self.stage] = max(self.by_stage.get(self.stage, 0),
                                                            anon)
                except (psutil.Error, OSError):
                    continue
            self._stop.wait(0.5)

    def __enter__(self) -> PeakRSS:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def follow(client, job_id: str, timeout: float,  # noqa: ANN001
           rss: PeakRSS) -> tuple[dict, dict[str, float]]:
    """Poll a job to its end; seconds in each stage as a client sees them (and tell the
    memory sampler which stage the job is in)."""
    start = last = time.perf_counter()
    stage, stages = None, {}
    while True:
        doc = client.get(f"/v1/jobs/{job_id}").json()
        now = time.perf_counter()
        if stage is not None:
            stages[stage] = stages.get(stage, 0.0) + now - last
        stage, last = (doc.get("stage") or doc["status"]), now
        rss.stage = stage
        if doc["status"] in ("succeeded", "failed", "cancelled"):
            return doc, stages
        assert now - start < timeout, doc
        time.sleep(0.5)


def folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def run(n: int, work: Path, shard_units: int) -> dict:
    folder = Path(tempfile.mkdtemp(dir=work))
    out: dict = {"pairs": n}
    t = time.perf_counter()
    data = folder / "pairs.parquet"
    write_pairs(data, n)
    out["generate_s"], out["file_bytes"] = time.perf_counter() - t, data.stat().st_size
    state, cache = RedisServer(folder, persist=False), RedisServer(folder, persist=False)
    state.start()
    cache.start()
    env = {"ISA_CACHE_REDIS_URL": cache.url, "ISA_ARTIFACT_URL": str(folder / "artifacts"),
           "ISA_EMBEDDING_SHARD_DTYPE": "float16", "ISA_SCORE_SHARD_UNITS": str(shard_units),
           "ISA_MAX_ROWS": str(2 * n), "ISA_MAX_UPLOAD_BYTES": str(4 * data.stat().st_size),
           "ISA_MAX_STORED_BYTES_PER_TENANT": str(8 * data.stat().st_size),
           # each task in a fresh worker process: the memory figures by stage are that
           # stage's tasks alone, not what an earlier task left with the allocator
           "ISA_WORKER_MAX_TASKS_PER_CHILD": "1"}
    second = None
    try:
        with running_service(state.url, folder, concurrency=1, extra_env=env) as svc:
            log = (folder / "worker-b.log").open("ab")
            second = subprocess.Popen(_worker_command(1), env=svc.env, stdout=log,
                                      stderr=subprocess.STDOUT)
            port = svc.base_url.rsplit(":", 1)[1]
            api = next(p for p in psutil.process_iter(["cmdline"])
                       if "app.main:app" in (cmd := p.info["cmdline"] or [])
                       and port in cmd)
            assert svc.worker is not None
            out.update(precache(data, svc.env, shard_texts=500_000))
            c = svc.client()
            c.timeout = 600
            roots = {"gateway": api.pid, "worker A": svc.worker.pid, "worker B": second.pid}
            with PeakRSS(roots) as rss:
                t = time.perf_counter()
                ds = svc.upload(c, data, id_field="id")
                out["upload_s"] = time.perf_counter() - t
                t = time.perf_counter()
                ds = svc.wait_dataset(c, ds["id"], timeout=7200)
                assert ds["status"] == "ready", ds
                out["validate_s"] = time.perf_counter() - t
                t = time.perf_counter()
                job = c.post("/v1/jobs", json={"type": "select", "dataset_id": ds["id"],
                                               "method": "isa", "budget": {"fraction": 0.01},
                                               "encoder": ENCODER})
                assert job.status_code == 201, job.text
                done, stages = follow(c, job.json()["id"], timeout=7200, rss=rss)
                out["job_s"] = time.perf_counter() - t
                assert done["status"] == "succeeded", (done, svc.tail("worker"))
                t = time.perf_counter()
                subset = c.get(f"/v1/jobs/{done['id']}/result", params={"format": "jsonl"})
                out["download_s"] = time.perf_counter() - t
            emb = done["result"]["embedding"]
            assert emb["newly_embedded"] == 0 and subset.status_code == 200
            out.update(stages={k: round(v, 1) for k, v in stages.items()},
                       rss_mb={k: v / 2**20 for k, v in rss.peak.items()},
                       anon_mb={k: v / 2**20 for k, v in rss.anon.items()},
                       stage_anon_mb={k: v / 2**20 for k, v in rss.by_stage.items()},
                       selected=len(subset.text.splitlines()),
                       scoring_tasks=done["result"]["scoring"]["workers"],
                       state_redis_mb=redis.Redis.from_url(state.url).info("memory")[
                           "used_memory"] / 2**20,
                       index_redis_mb=redis.Redis.from_url(cache.url).info("memory")[
                           "used_memory"] / 2**20,
                       artifacts={p.name: folder_bytes(p)
                                  for p in (folder / "artifacts").iterdir() if p.is_dir()})
    finally:
        if second is not None:
            second.terminate()
            second.wait(timeout=60)
        state.stop()
        cache.stop()
        shutil.rmtree(folder, ignore_errors=True)
    return out


def report(rows: list[dict], args: argparse.Namespace) -> str:
    stage_names = list(dict.fromkeys(s for r in rows for s in r["stages"]))
    lines = [
        "# ISA 1% through the service (bench/scale_service.py)",
        "",
        f"Gateway + 2 Celery workers (one process each), Redis for state and a second for "
        f"the embedding index; scoring tasks of {args.shard_units:,} units. Synthetic pairs "
        "(Parquet, ~40-character texts) whose 384-d float16 embeddings were put in the store "
        "first: no encoding is measured. One run on 2 cores.",
        "",
        "## Wall time (s)",
        "",
        "| pairs | upload | validate | select job | download subset | job s per M pairs "
        "| scoring tasks (per worker) | selected |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        tasks = ", ".join(str(v) for v in r["scoring_tasks"].values())
        lines.append(f"| {r['pairs']:,} | {r['upload_s']:.1f} | {r['validate_s']:.1f} | "
                     f"{r['job_s']:.1f} | {r['download_s']:.1f} | "
                     f"{r['job_s'] / r['pairs'] * 1e6:.1f} | {tasks} | {r['selected']:,} |")
    lines += ["", "## The select job's stages, as a polling client sees them (s)", "",
              "| pairs | " + " | ".join(stage_names) + " |",
              "|---|" + "---|" * len(stage_names)]
    for r in rows:
        lines.append(f"| {r['pairs']:,} | " + " | ".join(
            f"{r['stages'].get(s, 0):.1f}" for s in stage_names) + " |")
    roles = list(rows[0]["rss_mb"])
    lines += ["", "## Memory: peak of any one process (MB), Redis (MB), artifacts (MB)", "",
              "Per process: anonymous memory (RssAnon, what the process holds) / all "
              "resident pages (RSS, which also counts the pages of memory-mapped embedding "
              "shards it has read: page cache the kernel can reclaim).", "",
              "| pairs | " + " | ".join(roles) + " | state Redis | index Redis | "
              "index B per text | artifacts by folder |",
              "|---|" + "---|" * (len(roles) + 4)]
    for r in rows:
        arts = ", ".join(f"{k} {v / 2**20:,.0f}" for k, v in r["artifacts"].items())
        lines.append(f"| {r['pairs']:,} | " + " | ".join(
            f"{r['anon_mb'][k]:,.0f} / {r['rss_mb'][k]:,.0f}" for k in roles)
            + f" | {r['state_redis_mb']:,.1f} | "
            f"{r['index_redis_mb']:,.1f} | {r['index_redis_mb'] * 2**20 / r['texts']:.1f} | "
            f"{arts} |")
    lines += ["", "## Peak anonymous memory of any worker process, by the job's stage (MB)",
              "", "The stage the job showed when the sample was taken: `reading` is the "
              "task that reads the data set and asks the index; `fitting` the mixture on "
              "the fixed sample; `scoring` the map tasks, then the reduce (until it "
              "selects); `writing` the subset and scores. Each task runs in a fresh worker "
              "process (`ISA_WORKER_MAX_TASKS_PER_CHILD=1`), so a figure is its own "
              "stage's tasks (the reading task also fits).", "",
              "| pairs | " + " | ".join(stage_names) + " |",
              "|---|" + "---|" * len(stage_names)]
    for r in rows:
        lines.append(f"| {r['pairs']:,} | " + " | ".join(
            f"{r['stage_anon_mb'].get(s, 0):,.0f}" for s in stage_names) + " |")
    if len(rows) > 1:
        lines += ["", "Growth:"]
        for a, b in zip(rows[:-1], rows[1:], strict=True):
            peak = lambda r: max(r["anon_mb"]["worker A"], r["anon_mb"]["worker B"])  # noqa: E731
            lines.append(f"- {a['pairs']:,} → {b['pairs']:,} pairs "
                         f"(×{b['pairs'] / a['pairs']:.0f}): select job "
                         f"×{b['job_s'] / a['job_s']:.1f}, peak worker memory (anonymous) "
                         f"×{peak(b) / peak(a):.2f}")
    lines += ["", "Set-up outside the measured steps: writing the file and putting the "
              "embeddings in the store: " + "; ".join(
                  f"{r['pairs']:,}: {r['generate_s']:.0f} s + {r['precache_read_s']:.0f} s "
                  f"reading + {r['precache_write_s']:.0f} s storing {r['texts']:,} vectors"
                  for r in rows),
              "", f"Regenerate: `.venv/bin/python bench/scale_service.py --pairs {args.pairs}`"]
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--pairs", default="100000,1000000,10000000")
    ap.add_argument("--shard-units", type=int, default=50_000)
    ap.add_argument("--work-dir", default=None, help="where the data and shards go (big)")
    ap.add_argument("--out", default=str(OUT / "scale_service.md"))
    args = ap.parse_args()
    work = Path(args.work_dir or tempfile.gettempdir())
    rows = []
    for n in (int(x) for x in args.pairs.split(",")):
        rows.append(run(n, work, args.shard_units))
        print(rows[-1], flush=True)
        text = report(rows, args)
        Path(args.out).write_text(text)  # after every size: a long run keeps what it has
    print(text)


if __name__ == "__main__":
    main()
