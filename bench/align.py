"""The real check behind the proxy: DPO with SmolLM2-135M-Instruct on subsets chosen by
several methods, each scored on held-out pairs by the trained policy's implicit reward
(accuracy with its interval, length-balanced accuracy, mean margin, DPO eval loss).

    .venv/bin/python bench/align.py --dataset hh --methods "random;isa;consistency" \\
        --budget 0.1 --epochs 2 --fold 0 [--seeds 1] [--full]

``hh``: HH-RLHF harmless, prompt-grouped folds as bench/quality.py makes them (pool =
the other folds, evaluation = ``--fold``). ``alpaca``: the AlpacaEval pool sample and
held-out pairs of bench/quality.py. Methods: registry names, ``name:key=value,...``
for parameters, separated by ``;``. Runs as is on a GPU machine (the device is chosen
at run time): raise ``--epochs``, ``--eval-pairs`` and ``--seeds`` there.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from data_dir import add_data_dir, data_file  # noqa: E402  (bench/ is on the path)

os.environ.setdefault("HF_HUB_OFFLINE", "1")
OUT = ROOT / "bench" / "results"


def pools(args: argparse.Namespace, cache) -> tuple:  # noqa: ANN001
    """(pool PairSet, evaluation PairSet, examples by row_id) for the chosen data set."""
    from quality import sample

    from isa import PreferenceFile, SentenceTransformerEncoder
    from isa.evaluate.runner import holdout, load_pairs
    from isa.evaluate.split import kfold_by_prompt

    enc = SentenceTransformerEncoder()
    if args.dataset == "hh":
        source = PreferenceFile(data_file(args.data_dir, "hh_rlhf_harmless_base_test.jsonl.gz"))
        pairs = load_pairs(source, enc, cache=cache)
        folds = kfold_by_prompt(pairs.table.prompt_keys, k=args.folds, seed=0)
        keep = np.ones(len(pairs.table), dtype=bool)
        keep[folds[args.fold]] = False
        examples = {e.row_id: e for e in source}
        return pairs.subset(np.flatnonzero(keep)), pairs.subset(folds[args.fold]), examples
    tmp = Path(tempfile.mkdtemp())
    sample(data_file(args.data_dir, "alpaca_eval_prefs_train.jsonl.gz"), 12000,
           tmp / "pool.jsonl", 0)
    sample(data_file(args.data_dir, "alpaca_eval_prefs_test.jsonl.gz"), 3000,
           tmp / "eval.jsonl", 1)
    pool, held = (PreferenceFile(tmp / "pool.jsonl"), PreferenceFile(tmp / "eval.jsonl"))
    examples = {e.row_id: e for src in (pool, held) for e in src}
    train, test, _ = holdout(load_pairs(pool, enc, cache=cache), load_pairs(held, enc,
                                                                             cache=cache))
    return train, test, examples


def main() -> None:
    from isa.align import AlignConfig, ModelRegistry, run_alignment
    from isa.cli import parse_method_spec
    from isa.embed.base import DiskEmbeddingCache
    from isa.evaluate.runner import is_stochastic, ranking_for
    from isa.select import Budget

    ap = argparse.ArgumentParser()
    ap.add_argument("--dataset", choices=("hh", "alpaca"), default="hh")
    ap.add_argument("--methods", default="random;isa;consistency",
                    help="';'-separated: name or name:key=value,key=value")
    ap.add_argument("--budget", type=float, default=0.1)
    ap.add_argument("--epochs", type=float, default=2.0)
    ap.add_argument("--seeds", type=int, default=1, help="seeds of random-based methods")
    ap.add_argument("--fold", type=int, default=0)
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--eval-pairs", type=int, default=0, help="0: the whole held-out fold")
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument("--max-length", type=int, default=256)
    ap.add_argument("--learning-rate", type=float, default=5e-6)
    ap.add_argument("--full", action="store_true", help="full fine-tuning instead of LoRA")
    add_data_dir(ap)
    args = ap.parse_args()
    cache = DiskEmbeddingCache(OUT / "tmp" / "embeddings")
    pool, test, examples = pools(args, cache)
    cache.save()
    held = [examples[r] for r in test.table.row_ids]
    if args.eval_pairs:
        held = [held[i] for i in np.random.default_rng(0).permutation(len(held))[
            :args.eval_pairs]]
    k = Budget(fraction=args.budget).size(len(pool.table))
    model = ModelRegistry().resolve("smollm2-135m")
    cfg = AlignConfig(method="dpo", epochs=args.epochs, batch_size=args.batch_size,
                      max_length=args.max_length, learning_rate=args.learning_rate,
                      beta=0.1, lora=not args.full, seed=0)
    print(f"== DPO, SmolLM2-135M-Instruct ({'full' if args.full else 'LoRA'}), "
          f"{args.epochs:g} epochs × batch {args.batch_size}, lr {args.learning_rate:g}, "
          f"max_length {args.max_length}; {args.dataset} pool {len(pool.table):,} pairs, "
          f"subsets {k:,} ({args.budget:.0%}); {len(held)} held-out pairs", flush=True)
    rows = []
    context = dict(args=args, pool=pool, k=k, n=len(held))
    with tempfile.TemporaryDirectory() as tmp:
        for spec in args.methods.split(";"):
            name, params = parse_method_spec(spec)
            for seed in range(args.seeds if is_stochastic(name, params) else 1):
                idx = ranking_for(pool, name, params, seed, k)[:k]
                train = [examples[pool.table.row_ids[i]] for i in idx]
                t = time.perf_counter()
                r = run_alignment(train, model, Path(tmp) / f"{name}-{seed}", cfg,
                                  eval_pairs=held)
                ev = r.evaluation
                rows.append({"method": spec, "seed": seed, "train_pairs": len(train),
                             "trained": r.examples_trained, "steps": r.steps,
                             "seconds": round(time.perf_counter() - t),
                             **ev["policy"], "base_logp_accuracy": ev["base"]["logp_accuracy"],
                             "length_rule_accuracy": ev["length"]["length_rule_accuracy"]})
                print(json.dumps(rows[-1]), flush=True)
                # Written after every arm: a run of hours that is stopped keeps what it did.
                write_report(rows, **context)
    print((OUT / f"align_{args.dataset}.md").read_text())


def write_report(rows: list[dict], *, args: argparse.Namespace, pool, k: int,  # noqa: ANN001
                 n: int) -> None:
    lines = ["| method (seed) | pairs (trained) | steps | reward accuracy (95% ±) | "
             "length-balanced | mean margin | eval loss | s |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        acc = r["reward_accuracy"]
        half = 1.96 * np.sqrt(acc * (1 - acc) / n)
        lines.append(f"| {r['method']} ({r['seed']}) | {r['train_pairs']:,} ({r['trained']}) | "
                     f"{r['steps']} | "
                     f"{acc:.3f} (±{half:.3f}) | {r['balanced_reward_accuracy']:.3f} | "
                     f"{r['reward_margin_mean']:+.3f} | {r['eval_loss']:.3f} | "
                     f"{r['seconds']:,} |")
    base = rows[0]["base_logp_accuracy"]
    text = "\n".join([
        f"# DPO on subsets (bench/align.py, {args.dataset})", "",
        f"SmolLM2-135M-Instruct, {'full fine-tuning' if args.full else 'LoRA'}, "
        f"{args.epochs:g} epochs, batch {args.batch_size}, lr {args.learning_rate:g}, "
        f"β 0.1, max_length {args.max_length}; pool {len(pool.table):,} pairs, subsets "
        f"{k:,} ({args.budget:.0%}); {n} held-out pairs (fold {args.fold} of {args.folds}"
        f" by prompt for hh). Base model's own log-likelihood accuracy on them: {base:.3f}; "
        f"the length rule's: {rows[0]['length_rule_accuracy']:.3f}.", "",
        *lines, "",
        f"Regenerate: `.venv/bin/python bench/align.py {shlex.join(sys.argv[1:])}`", ""])
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / f"align_{args.dataset}.md").write_text(text)
    (OUT / f"align_{args.dataset}.json").write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
