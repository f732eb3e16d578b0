"""Encoding on a GPU: texts/s with fp16 and large length-sorted batches, and how far
its vectors and ISA subsets are from the CPU default's. Run it as is on a machine with
CUDA (it says so and stops on one without):

    .venv/bin/python bench/gpu.py [--pairs 20000] [--cpu-pairs 1000]

Writes bench/results/gpu.md.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import random
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from data_dir import add_data_dir, data_file  # noqa: E402

os.environ.setdefault("HF_HUB_OFFLINE", "1")
OUT = ROOT / "bench" / "results"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_data_dir(ap)
    ap.add_argument("--pairs", type=int, default=20000, help="AlpacaEval pairs on the GPU")
    ap.add_argument("--cpu-pairs", type=int, default=1000,
                    help="of those, embedded on the CPU too (the reference)")
    args = ap.parse_args()

    import torch

    if not torch.cuda.is_available():
        print("no CUDA device here: bench/gpu.py measures nothing (run it on a GPU machine)")
        return
    from isa import Budget, SentenceTransformerEncoder, make_method
    from isa.embed.templates import join_prompt
    from isa.select import apply_budget

    with gzip.open(data_file(args.data_dir, "alpaca_eval_prefs_train.jsonl.gz"), "rt",
                   encoding="utf-8") as fh:
        pool = [json.loads(line) for line in fh]
    rows = random.Random(0).sample(pool, min(args.pairs, len(pool)))
    texts = [join_prompt(r["prompt"], r[s]) for r in rows for s in ("chosen", "rejected")]
    lines = ["# Encoding on a GPU (bench/gpu.py)", "",
             f"{torch.cuda.get_device_name(0)}; {len(texts):,} AlpacaEval texts "
             f"({len(rows):,} pairs); the CPU reference on the first {args.cpu_pairs:,} pairs.",
             "", "| setting | texts/s | cosine to CPU min / mean | ISA 5% overlap with CPU |",
             "|---|---|---|---|"]
    n_ref = 2 * args.cpu_pairs
    cpu = SentenceTransformerEncoder(device="cpu")
    t = time.perf_counter()
    X_cpu = cpu.encode(texts[:n_ref])
    cpu_rate = n_ref / (time.perf_counter() - t)
    groups = np.repeat(np.arange(args.cpu_pairs), 2)

    def subset(X: np.ndarray) -> set[int]:
        m = make_method("isa").fit(X, groups=groups)
        return set(np.flatnonzero(apply_budget(m.ranking_, Budget(fraction=0.05))).tolist())

    ref = subset(X_cpu)
    lines.append(f"| CPU `{cpu.name}` | {cpu_rate:,.0f} | 1 | 100% |")
    for precision, batch, length in (("float16", 256, 256), ("float16", 512, 128),
                                     ("bfloat16", 256, 256), ("float32", 256, 256)):
        enc = SentenceTransformerEncoder(device="cuda", precision=precision,
                                         batch_size=batch, max_seq_length=length,
                                         chunk_size=8192)
        enc.encode(texts[:256])
        torch.cuda.synchronize()
        t = time.perf_counter()
        X = enc.encode(texts)  # sentence-transformers sorts each chunk by length
        torch.cuda.synchronize()
        rate = len(texts) / (time.perf_counter() - t)
        cos = (X[:n_ref] * X_cpu).sum(1)
        overlap = len(subset(X[:n_ref]) & ref) / len(ref)
        line = (f"| CUDA `{enc.name}`, batch {batch} | {rate:,.0f} "
                f"(×{rate / cpu_rate:.0f} the CPU) | {cos.min():.4f} / {cos.mean():.5f} "
                f"| {overlap:.1%} |")
        print(line, flush=True)
        lines.append(line)
    lines += ["", "Regenerate: `.venv/bin/python bench/gpu.py` on a machine with CUDA"]
    text = "\n".join(lines) + "\n"
    print(text)
    (OUT / "gpu.md").write_text(text)


if __name__ == "__main__":
    main()
