"""ISA 1% over 100k, 1M and 10M pairs as map/reduce over shards in 2 worker processes:
how time, peak memory per process and bytes grow with n.

    .venv/bin/python bench/scale.py [--pairs 100000,1000000,10000000] [--workers 2]

The embeddings are synthetic and pre-computed (a two-cluster mixture in 384 dimensions,
float16 shard files, as the sharded embedding store writes them): this measures fitting,
scoring, selection and I/O, not encoding. Each step is the function the service's tasks
call (isa.select.sharded), run in a process pool: fit on ISA's seeded sample, map (the
log-likelihood of a shard's items), reduce (global bounds, each shard's top k, merged).
At the smallest size the single-process ``ISA().fit`` runs too, and must pick the same
subset. Writes bench/results/scale.md.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from isa.select.isa import ISA  # noqa: E402
from isa.select.sharded import (  # noqa: E402
    ISAModel,
    merge_bounds,
    merge_top_k,
    score_shard,
    shard_scores,
    top_k,
)

OUT = ROOT / "bench" / "results"
DIM = 384


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def _write_shard(args: tuple) -> tuple[float, float]:
    folder, index, pairs, seed = args
    rng = np.random.default_rng([seed, index])
    items = 2 * pairs
    # two clusters with different spreads: a mixture with something to find
    cluster = rng.random(items) < 0.3
    X = rng.standard_normal((items, DIM), dtype=np.float32)
    X[cluster] = X[cluster] * 1.6 + 0.4
    np.save(Path(folder) / f"shard-{index:05d}.npy", X.astype(np.float16))
    return _rss_mb(), 0.0


def _fit(args: tuple) -> tuple[float, float]:
    folder, n_items, shard_items, params = args
    t = time.perf_counter()
    method = ISA(**params)
    idx = method.fit_sample(n_items)
    idx = np.arange(n_items) if idx is None else idx
    X = np.empty((idx.size, DIM), dtype=np.float32)
    for s in np.unique(idx // shard_items):
        rows = idx[(idx // shard_items) == s]
        shard = np.load(Path(folder) / f"shard-{s:05d}.npy", mmap_mode="r")
        X[np.searchsorted(idx, rows)] = shard[rows - s * shard_items]
    np.savez(Path(folder) / "model.npz", **ISAModel.fit(method, X).state)
    return _rss_mb(), time.perf_counter() - t


def _map(args: tuple) -> tuple[float, float, tuple[float, float]]:
    folder, index, params = args
    t = time.perf_counter()
    with np.load(Path(folder) / "model.npz") as npz:
        method = ISAModel({k: npz[k] for k in npz.files}).restore(ISA(**params))
    X = np.load(Path(folder) / f"shard-{index:05d}.npy", mmap_mode="r")
    scores = score_shard(method, np.asarray(X, dtype=np.float32))
    np.save(Path(folder) / f"ll-{index:05d}.npy", scores.log_likelihood)
    return _rss_mb(), time.perf_counter() - t, scores.bounds


def _reduce(args: tuple) -> tuple[float, float, tuple[np.ndarray, np.ndarray]]:
    folder, index, pairs_per_shard, bounds, k, params = args
    t = time.perf_counter()
    ll = np.load(Path(folder) / f"ll-{index:05d}.npy")
    from isa.select.sharded import ShardScores

    groups = np.repeat(np.arange(ll.size // 2), 2)
    scores = shard_scores(ISA(**params), ShardScores(ll, np.zeros(0)), groups, ll.size // 2,
                          bounds)
    return _rss_mb(), time.perf_counter() - t, top_k(scores, k, offset=index * pairs_per_shard)


def _single(args: tuple) -> tuple[float, float, np.ndarray]:
    folder, shards, k, params = args
    t = time.perf_counter()
    X = np.concatenate([np.load(Path(folder) / f"shard-{s:05d}.npy").astype(np.float32)
                        for s in range(shards)])
    groups = np.repeat(np.arange(X.shape[0] // 2), 2)
    labels = np.tile(np.array(["chosen", "rejected"]), X.shape[0] // 2)
    method = ISA(**params).fit(X, groups=groups, item_labels=labels)
    return _rss_mb(), time.perf_counter() - t, method.ranking_[:k]


def run(n_pairs: int, shard_pairs: int, workers: int, budget: float, work: Path,
        single: bool) -> dict:
    folder = Path(tempfile.mkdtemp(dir=work))
    shards = -(-n_pairs // shard_pairs)
    assert n_pairs % shard_pairs == 0 or shards == 1, "pairs must be a multiple of a shard"
    pairs_per_shard = min(shard_pairs, n_pairs)
    params = {"random_state": 0}
    k = max(1, int(round(budget * n_pairs)))
    out: dict = {"pairs": n_pairs, "shards": shards, "k": k}
    # a fresh pool per step: each process's peak memory is that step's
    with mp.get_context("spawn").Pool(workers) as pool:
        t = time.perf_counter()
        pool.map(_write_shard, [(folder, i, pairs_per_shard, 0) for i in range(shards)])
        out["generate_s"] = time.perf_counter() - t
    out["shard_bytes"] = sum(p.stat().st_size for p in folder.glob("shard-*.npy"))
    with mp.get_context("spawn").Pool(1) as pool:
        t = time.perf_counter()
        out["fit_rss_mb"], _ = pool.apply(_fit, ((folder, 2 * n_pairs, 2 * pairs_per_shard,
                                                  params),))
        out["fit_s"] = time.perf_counter() - t
    with mp.get_context("spawn").Pool(workers) as pool:
        t = time.perf_counter()
        maps = pool.map(_map, [(folder, i, params) for i in range(shards)])
        out["map_s"] = time.perf_counter() - t
        out["map_rss_mb"] = max(m[0] for m in maps)
    bounds = merge_bounds(m[2] for m in maps)
    with mp.get_context("spawn").Pool(workers) as pool:
        t = time.perf_counter()
        reds = pool.map(_reduce, [(folder, i, pairs_per_shard, bounds, k, params)
                                  for i in range(shards)])
        _, selected = merge_top_k((r[2] for r in reds), k)
        out["reduce_s"] = time.perf_counter() - t
        out["reduce_rss_mb"] = max(r[0] for r in reds)
    out["ll_bytes"] = sum(p.stat().st_size for p in folder.glob("ll-*.npy"))
    out["total_s"] = out["fit_s"] + out["map_s"] + out["reduce_s"]
    out["parent_rss_mb"] = _rss_mb()
    if single:
        with mp.get_context("spawn").Pool(1) as pool:
            t = time.perf_counter()
            rss, _, ranking = pool.apply(_single, ((folder, shards, k, params),))
            out["single_s"], out["single_rss_mb"] = time.perf_counter() - t, rss
            out["single_same_subset"] = bool(np.array_equal(np.sort(ranking), np.sort(selected))
                                             and np.array_equal(ranking, selected))
    shutil.rmtree(folder)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--pairs", default="100000,1000000,10000000")
    ap.add_argument("--shard-pairs", type=int, default=100_000)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--budget", type=float, default=0.01)
    ap.add_argument("--single-up-to", type=int, default=1_000_000,
                    help="also run single-process ISA for sizes up to this many pairs")
    ap.add_argument("--work-dir", default=None, help="where shards are written (big)")
    args = ap.parse_args()
    work = Path(args.work_dir or tempfile.gettempdir())
    rows = []
    for n in (int(x) for x in args.pairs.split(",")):
        r = run(n, args.shard_pairs, args.workers, args.budget, work,
                single=n <= args.single_up_to)
        print(r, flush=True)
        rows.append(r)
    lines = [
        "# ISA 1% as map/reduce over shards (bench/scale.py)",
        "",
        f"{args.workers} worker processes; shards of {args.shard_pairs:,} pairs (2 items each, "
        f"{DIM}-d float16, pre-computed synthetic embeddings); ISA defaults (2 components, "
        "diag, fitted on a seeded 200,000-item sample). Peak RSS: the largest of any one "
        "process in the step.",
        "",
        "| pairs | shards | fit s | map s | reduce s | total s | s per M pairs | fit RSS MB "
        "| map RSS MB | reduce RSS MB | shard GB | single-process s / RSS MB | same subset |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        single = (f"{r['single_s']:.1f} / {r['single_rss_mb']:,.0f}" if "single_s" in r
                  else "—")
        lines.append(
            f"| {r['pairs']:,} | {r['shards']} | {r['fit_s']:.1f} | {r['map_s']:.1f} | "
            f"{r['reduce_s']:.1f} | {r['total_s']:.1f} | {r['total_s'] / r['pairs'] * 1e6:.1f} | "
            f"{r['fit_rss_mb']:,.0f} | {r['map_rss_mb']:,.0f} | {r['reduce_rss_mb']:,.0f} | "
            f"{r['shard_bytes'] / 1e9:.2f} | {single} | {r.get('single_same_subset', '—')} |")
    if len(rows) > 1:
        lines += ["", "Growth (time of the map and reduce steps; the fit is on a fixed sample):"]
        for a, b in zip(rows[:-1], rows[1:], strict=True):
            mr = lambda r: r["map_s"] + r["reduce_s"]  # noqa: E731
            lines.append(f"- {a['pairs']:,} → {b['pairs']:,} pairs "
                         f"(×{b['pairs'] / a['pairs']:.0f}): map+reduce ×{mr(b) / mr(a):.1f}, "
                         "peak map RSS "
                         f"×{b['map_rss_mb'] / a['map_rss_mb']:.2f}")
    lines += ["", f"Regenerate: `.venv/bin/python bench/scale.py --pairs {args.pairs}`"]
    text = "\n".join(lines) + "\n"
    print(text)
    (OUT / "scale.md").write_text(text)


if __name__ == "__main__":
    main()
