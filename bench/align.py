"""DPO with SmolLM2-135M-Instruct (LoRA) on CPU for a fixed number of steps on
(a) an ISA subset, (b) a random subset of the same size, (c) the full pool, each
evaluated on held-out AlpacaEval pairs: preference accuracy, margin, seconds per step.

    .venv/bin/python bench/align.py [--pool-pairs 12000] [--budget 0.05] [--steps 15]

The pool is the same seeded sample bench/quality.py uses, so its embeddings come from
that run's cache when present.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from data_dir import add_data_dir, data_file  # noqa: E402  (bench/ is on the path)

sys.path.insert(0, str(ROOT / "bench"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
OUT = ROOT / "bench" / "results"


def main() -> None:
    from quality import sample

    from isa import Budget, PreferenceFile, SentenceTransformerEncoder, make_method
    from isa.align import AlignConfig, ModelRegistry, run_alignment
    from isa.embed.base import DiskEmbeddingCache
    from isa.evaluate.runner import load_pairs

    ap = argparse.ArgumentParser()
    ap.add_argument("--pool-pairs", type=int, default=12000)
    ap.add_argument("--eval-pairs", type=int, default=100)
    ap.add_argument("--budget", type=float, default=0.05)
    ap.add_argument("--steps", type=int, default=15)
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument("--max-length", type=int, default=256)
    add_data_dir(ap)
    args = ap.parse_args()
    model = ModelRegistry().resolve("smollm2-135m")
    cache = DiskEmbeddingCache(OUT / "tmp" / "embeddings")
    with tempfile.TemporaryDirectory() as tmp:
        pool_file, eval_file = Path(tmp) / "pool.jsonl", Path(tmp) / "eval.jsonl"
        sample(data_file(args.data_dir, "alpaca_eval_prefs_train.jsonl.gz"),
               args.pool_pairs, pool_file, 0)
        sample(data_file(args.data_dir, "alpaca_eval_prefs_test.jsonl.gz"),
               args.eval_pairs, eval_file, 2)
        pool = PreferenceFile(pool_file)
        examples = {e.row_id: e for e in pool}
        pairs = load_pairs(pool, SentenceTransformerEncoder(), cache=cache)
        cache.save()
        held = list(PreferenceFile(eval_file))
        t = pairs.table
        k = Budget(fraction=args.budget).size(len(t))
        isa = make_method("isa").fit(pairs.X, groups=t.groups, n_units=len(t)).ranking_[:k]
        rnd = make_method("random").fit(None, n_units=len(t)).ranking_[:k]
        runs = {"isa": [examples[t.row_ids[i]] for i in isa],
                "random": [examples[t.row_ids[i]] for i in rnd],
                "full pool": list(examples.values())}
        cfg = AlignConfig(method="dpo", max_steps=args.steps, batch_size=args.batch_size,
                          max_length=args.max_length, learning_rate=1e-4, beta=0.1)
        print(f"== DPO, SmolLM2-135M-Instruct + LoRA r{cfg.lora_r}, {args.steps} steps × "
              f"batch {args.batch_size}, max_length {args.max_length}; pool {len(t):,} pairs, "
              f"subsets {k:,} pairs ({args.budget:.0%}); eval {len(held)} held-out pairs",
              flush=True)
        rows = []
        for name, train in runs.items():
            r = run_alignment(train, model, Path(tmp) / name.replace(" ", "_"), cfg,
                              eval_pairs=held)
            ev = r.evaluation
            rows.append({"run": name, "train_pairs": len(train), "steps": r.steps,
                         "seconds_per_step": round(r.seconds_per_step, 2),
                         "reward_accuracy": ev["policy"]["reward_accuracy"],
                         "reward_margin_mean": ev["policy"]["reward_margin_mean"],
                         "policy_logp_accuracy": ev["policy"]["logp_accuracy"],
                         "base_logp_accuracy": ev["base"]["logp_accuracy"],
                         "final_train_loss": r.history[-1]["loss"] if r.history else None})
            print(json.dumps(rows[-1]), flush=True)
    n = len(held)
    lines = ["| run | train pairs | reward accuracy (95% ±) | mean reward margin | "
             "policy log-p accuracy | base log-p accuracy | s/step |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        half = 1.96 * np.sqrt(r["reward_accuracy"] * (1 - r["reward_accuracy"]) / n)
        lines.append(f"| {r['run']} | {r['train_pairs']:,} | {r['reward_accuracy']:.3f} "
                     f"(±{half:.3f}) | {r['reward_margin_mean']:+.4f} | "
                     f"{r['policy_logp_accuracy']:.3f} | {r['base_logp_accuracy']:.3f} | "
                     f"{r['seconds_per_step']:.2f} |")
    table = "\n".join(lines)
    print(table)
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "align.md").write_text(
        "# DPO on subsets (bench/align.py)\n\n" + table + "\n\nRegenerate: "
        f"`.venv/bin/python bench/align.py --steps {args.steps}`\n")


if __name__ == "__main__":
    main()
