"""Every selection method against random (several seeds) and the paper's ISA, on a
yardstick that "the longer answer wins" cannot game.

Scenarios (each a table in bench/results/quality.md; every number in quality.json):
- ``alpaca``: a seeded sample of the AlpacaEval pool (train file), held-out pairs from the
  test file (no shared prompts). The judges favour the longer answer in ~85% of pairs, so
  length-balanced accuracy is the measure that counts here.
- ``noisy``: the same pool with a seeded 25% of its labels flipped (evaluation pairs
  untouched): real preference sets carry 25–35% annotator disagreement.
- ``hh``: HH-RLHF harmless, prompt-grouped 5-fold (pool = 4 folds, test = the fifth,
  pooled over the five rounds): a domain where length is no shortcut.
- ``rm``: a second evaluator on HH (a MiniLM reward model fine-tuned on each subset),
  for random, paper ISA and the methods the probe ranks best; the rank correlation of
  the two evaluators' method orders.

Score: a Bradley–Terry probe on MiniLM features trained on the subset; accuracy and
length-balanced accuracy on held-out pairs. No parameter is tuned on evaluation pairs:
every method runs with its defaults.

    .venv/bin/python bench/quality.py [--scenarios alpaca,noisy,hh,rm] [--seeds 5]
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import random
import shlex
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from data_dir import add_data_dir, data_file  # noqa: E402  (bench/ is on the path)

os.environ.setdefault("HF_HUB_OFFLINE", "1")
OUT = ROOT / "bench" / "results"

#: (label, method, params); methods that read the judge's margin run where it exists
METHODS: list[tuple[str, str, dict]] = [
    ("random", "random", {}),
    ("isa (paper, diag)", "isa", {}),
    ("isa (full cov, PCA 32)", "isa", {"covariance_type": "full", "pca_components": 32}),
    ("density", "density", {}),
    ("kcenter", "kcenter", {}),
    ("margin", "margin", {}),
    ("isa_prompt", "isa_prompt", {}),
    ("isa_dedup", "isa_dedup", {}),
    # from the preference-data literature (isa/select/preference.py)
    ("consistency (easy first)", "consistency", {}),
    ("consistency (hard first)", "consistency", {"order": "hard"}),
    ("clean → random", "clean", {"base": "random"}),
    ("clean → isa", "clean", {"base": "isa"}),
    ("quality_diversity", "quality_diversity", {}),
    ("length_balanced random", "length_balanced", {"base": "random"}),
    ("length_balanced consistency", "length_balanced", {"base": "consistency"}),
    ("length_balanced (clean → random)", "length_balanced",
     {"base": "clean", "base_params": {"base": "random"}}),
]
NEEDS_MARGIN = {"margin"}


def sample(path: Path, n: int, out: Path, seed: int) -> None:
    with gzip.open(path, "rt", encoding="utf-8") as fh:
        lines = fh.readlines()
    if n and n < len(lines):
        lines = random.Random(seed).sample(lines, n)
    out.write_text("".join(lines), encoding="utf-8")


def methods_for(pairs: Any) -> list[tuple[str, str, dict]]:
    has_margin = "margin" in pairs.table.meta
    return [m for m in METHODS if m[1] not in NEEDS_MARGIN or has_margin]


# --- running ---------------------------------------------------------------------------


def curve(train: Any, test: Any, methods: list, grid: list[float], seeds: int) -> dict:
    from isa.evaluate.runner import budget_curve

    return budget_curve(train, test, [(m, p) for _, m, p in methods], grid=grid, seeds=seeds,
                        metric="accuracy")


def pooled(folds: list[dict], sizes: list[int]) -> dict:
    """Fold reports merged: each method's scores averaged with the folds' test sizes as
    weights (= the score over all pairs, each tested once); intervals shrink to match."""
    w = np.asarray(sizes, dtype=float) / sum(sizes)
    out = {"grid_percent": folds[0]["grid_percent"], "eval_pairs": sum(sizes),
           "pool_pairs": int(np.mean([f["pool_pairs"] for f in folds])), "methods": [],
           "full": {k: float(sum(wi * f["full"][k] for wi, f in zip(w, folds, strict=True)))
                    for k in ("accuracy", "balanced_accuracy")},
           "length": {"length_rule_accuracy": float(sum(
               wi * f["length"]["length_rule_accuracy"] for wi, f in zip(w, folds,
                                                                         strict=True)))}}
    n_total = sum(sizes)
    p = out["full"]["accuracy"]
    out["full"]["ci_half_width"] = 1.96 * float(np.sqrt(p * (1 - p) / n_total))
    for i, m in enumerate(folds[0]["methods"]):
        entry = {"method": m["method"], "params": m["params"], "seeds": m["seeds"]}
        for key in ("accuracy", "balanced_accuracy"):
            vals = np.asarray([f["methods"][i][key] for f in folds], dtype=float)
            entry[key] = (w @ vals).tolist()
            halves = np.asarray([f["methods"][i][f"{key}_ci_half_width"] for f in folds])
            entry[f"{key}_ci_half_width"] = (np.sqrt((w[:, None] ** 2 * halves ** 2).sum(0))
                                             ).tolist()
        out["methods"].append(entry)
    return out


def reward_model_scores(pool: Any, test: Any, idx: np.ndarray, texts: dict, seed: int,
                        epochs: int) -> dict:
    from isa.evaluate.probe import score_margins
    from isa.evaluate.reward_model import RewardModel

    c, r = texts["chosen"], texts["rejected"]
    rows = pool.table.source_rows[idx]
    rm = RewardModel(epochs=epochs, seed=seed).fit([c[i] for i in rows], [r[i] for i in rows])
    t_rows = test.table.source_rows
    margins = rm.margins([c[i] for i in t_rows], [r[i] for i in t_rows])
    return score_margins(margins, n_train=len(idx), length_diff=test.length_diff).to_dict()


# --- tables ----------------------------------------------------------------------------


def table(report: dict, labels: list[str], *, key: str = "accuracy",
          both: bool = True) -> str:
    """One row per method: ``acc / balanced`` at each budget; ▲/▼ when more than one
    combined 95% interval above/below random on that measure."""
    grid = report["grid_percent"]
    rnd = report["methods"][0]
    head = "| method | " + " | ".join(f"{g:g}%" for g in grid) + " |"
    lines = [head, "|" + "---|" * (len(grid) + 1)]
    for label, m in zip(labels, report["methods"], strict=True):
        cells = []
        for i in range(len(grid)):
            parts = []
            for k in ((key, "balanced_accuracy") if both else (key,)):
                v, rv = m[k][i], rnd[k][i]
                ci = float(np.hypot(m[f"{k}_ci_half_width"][i], rnd[f"{k}_ci_half_width"][i]))
                d = (v - rv) / ci if ci > 0 and m is not rnd and np.isfinite(v) else 0.0
                parts.append(f"{v:.3f}" + (" ▲" if d > 1 else " ▼" if d < -1 else ""))
            cells.append(" / ".join(parts))
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def best_vs_random(report: dict, labels: list[str], key: str, budgets: list[float]) -> dict:
    """The method with the highest mean ``key`` over ``budgets`` and its lead on random."""
    grid = report["grid_percent"]
    cols = [grid.index(b) for b in budgets]
    rnd = report["methods"][0]
    best = max(range(1, len(labels)), key=lambda i: np.mean(
        [report["methods"][i][key][c] for c in cols]))
    m = report["methods"][best]
    return {"method": labels[best], **{f"lead_{b:g}%": m[key][c] - rnd[key][c]
                                       for b, c in zip(budgets, cols, strict=True)}}


def main() -> None:
    from isa import PreferenceFile, SentenceTransformerEncoder
    from isa.embed.base import DiskEmbeddingCache
    from isa.evaluate.report import plot_curve
    from isa.evaluate.runner import holdout, load_pairs
    from isa.evaluate.split import kfold_by_prompt

    ap = argparse.ArgumentParser()
    ap.add_argument("--scenarios", default="alpaca,noisy,hh,rm")
    ap.add_argument("--pool-pairs", type=int, default=12000)
    ap.add_argument("--eval-pairs", type=int, default=3000)
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--grid", default="1,2,3.5,5,10,25,50,100")
    ap.add_argument("--hh-grid", default="2.5,5,10,25,50,100")
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--flip", type=float, default=0.25)
    ap.add_argument("--rm-folds", type=int, default=2, help="HH folds the reward model runs")
    ap.add_argument("--rm-epochs", type=int, default=3)
    ap.add_argument("--rm-methods", type=int, default=3, help="best probe methods it checks")
    ap.add_argument("--rm-seeds", type=int, default=2,
                    help="seeds of random-based methods under the reward model")
    add_data_dir(ap)
    args = ap.parse_args()
    scenarios = args.scenarios.split(",")
    t0 = time.perf_counter()
    enc = SentenceTransformerEncoder()
    # embeddings persist between runs (git-ignored): a re-run only scores and evaluates
    cache = DiskEmbeddingCache(OUT / "tmp" / "embeddings")
    results: dict[str, Any] = {"encoder": enc.name, "seeds": args.seeds}
    md = ["# Selection methods on a length-aware yardstick (bench/quality.py)", "",
          f"Score: a Bradley–Terry probe on {enc.name} features, trained on each subset; "
          "cells are **accuracy / length-balanced accuracy** (the mean of the accuracy on "
          "pairs whose chosen answer is the longer one and on those where it is the "
          "shorter one: a pure length rule scores 0.5). ▲/▼: more than one combined 95% "
          "interval above/below random on that measure. Random and the methods built on "
          f"it: mean of {args.seeds} seeds. Every method runs with its defaults; nothing "
          "is tuned on evaluation pairs.", ""]

    if {"alpaca", "noisy"} & set(scenarios):
        with tempfile.TemporaryDirectory() as tmp:
            pool_file, eval_file = Path(tmp) / "pool.jsonl", Path(tmp) / "eval.jsonl"
            sample(data_file(args.data_dir, "alpaca_eval_prefs_train.jsonl.gz"),
                   args.pool_pairs, pool_file, 0)
            sample(data_file(args.data_dir, "alpaca_eval_prefs_test.jsonl.gz"),
                   args.eval_pairs, eval_file, 1)
            pool = load_pairs(PreferenceFile(pool_file), enc, cache=cache)
            held = load_pairs(PreferenceFile(eval_file), enc, cache=cache)
        cache.save()
        train, test, _ = holdout(pool, held)
        grid = [float(g) for g in args.grid.split(",")]
        methods = methods_for(train)
        labels = [m[0] for m in methods]
        base = test.length_diff
        length = f"{(base > 0).mean():.0%}"
        if "alpaca" in scenarios:
            rep = curve(train, test, methods, grid, args.seeds)
            results["alpaca"] = rep | {"labels": labels}
            print(f"alpaca done {time.perf_counter() - t0:.0f} s", flush=True)
            md += [f"## AlpacaEval: pool {len(train.table):,} pairs, {len(test.table):,} "
                   "held-out pairs", "",
                   f"The chosen answer is the longer one in {length} of the held-out pairs: "
                   f"the length rule alone scores {rep['length']['length_rule_accuracy']:.3f}"
                   f". Full pool: accuracy {rep['full']['accuracy']:.3f}, length-balanced "
                   f"{rep['full']['balanced_accuracy']:.3f} "
                   f"[{rep['full']['balanced_ci_low']:.3f}, "
                   f"{rep['full']['balanced_ci_high']:.3f}].", "",
                   table(rep, labels), ""]
            plot = {**rep, "metric": "balanced_accuracy",  # fits were made on accuracy
                    "methods": [{**m, "method": label, "fit": None} for m, label in zip(
                        rep["methods"], labels, strict=True)]}
            plot_curve(plot, OUT / "quality.png", title=(
                f"Length-balanced probe accuracy — AlpacaEval pool {len(train.table):,}"))
        if "noisy" in scenarios:
            noisy, flipped = train.with_flipped_labels(args.flip, seed=7)
            rep = curve(noisy, test, methods, grid, args.seeds)
            clean_full = results.get("alpaca", {}).get("full") or curve(
                train, test, methods[:1], [100.0], 1)["full"]
            results["noisy"] = rep | {"labels": labels, "flipped": int(flipped.sum()),
                                      "clean_full": clean_full}
            print(f"noisy done {time.perf_counter() - t0:.0f} s", flush=True)
            md += [f"## AlpacaEval, {args.flip:.0%} of the pool's labels flipped "
                   f"({int(flipped.sum()):,} pairs; evaluation pairs untouched)", "",
                   f"Full noisy pool: accuracy {rep['full']['accuracy']:.3f}, balanced "
                   f"{rep['full']['balanced_accuracy']:.3f}; the clean full pool: "
                   f"{clean_full['accuracy']:.3f} / {clean_full['balanced_accuracy']:.3f}.",
                   "", table(rep, labels), ""]

    if {"hh", "rm"} & set(scenarios):
        hh = load_pairs(PreferenceFile(data_file(args.data_dir,
                                                 "hh_rlhf_harmless_base_test.jsonl.gz")),
                        enc, cache=cache)
        cache.save()
        folds = kfold_by_prompt(hh.table.prompt_keys, k=args.folds, seed=0)
        grid = [float(g) for g in args.hh_grid.split(",")]
        methods = methods_for(hh)
        labels = [m[0] for m in methods]
        rounds = []
        for f, test_idx in enumerate(folds):
            keep = np.ones(len(hh.table), dtype=bool)
            keep[test_idx] = False
            rounds.append(curve(hh.subset(np.flatnonzero(keep)), hh.subset(test_idx),
                                methods, grid, args.seeds))
            print(f"hh fold {f} done {time.perf_counter() - t0:.0f} s", flush=True)
        rep = pooled(rounds, [len(f) for f in folds])
        results["hh"] = rep | {"labels": labels, "folds": rounds}
        md += [f"## HH-RLHF harmless: prompt-grouped {args.folds}-fold "
               f"(pool ≈ {rep['pool_pairs']:,} pairs, every one of {rep['eval_pairs']:,} "
               "pairs tested once)", "",
               f"Length is no shortcut here: the length rule scores "
               f"{rep['length']['length_rule_accuracy']:.3f}. Full pool: accuracy "
               f"{rep['full']['accuracy']:.3f} (± {rep['full']['ci_half_width']:.3f}), "
               f"balanced {rep['full']['balanced_accuracy']:.3f}.", "",
               table(rep, labels), ""]
        plot = {**rep, "metric": "accuracy",
                "methods": [{**m, "method": label, "ci_half_width": m[
                    "accuracy_ci_half_width"], "seeds": m["seeds"]} for m, label in zip(
                        rep["methods"], labels, strict=True)]}
        plot_curve(plot, OUT / "quality_hh.png", title=(
            f"Probe accuracy — HH harmless, {args.folds}-fold by prompt"))

        if "rm" in scenarios:
            lines, results["rm"] = reward_model_section(hh, folds, methods, labels, rounds,
                                                        args)
            md += lines

    results["seconds"] = round(time.perf_counter() - t0)
    md += targets(results), ""
    md += [f"Regenerate: `.venv/bin/python bench/quality.py {shlex.join(sys.argv[1:])}` "
           f"({results['seconds']:,} s on 2 cores, embeddings cached under "
           "bench/results/tmp).", ""]
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "quality.json").write_text(json.dumps(results, indent=1, default=float))
    (OUT / "quality.md").write_text("\n".join(md))
    print("\n".join(md))


def reward_model_section(hh: Any, folds: list[np.ndarray], methods: list, labels: list[str],
                         rounds: list[dict], args: argparse.Namespace
                         ) -> tuple[list[str], dict]:
    """The fine-tuned reward model on random, paper ISA and the methods the probe ranks
    best (on the folds the reward model runs), next to the probe's own numbers."""
    from scipy.stats import spearmanr

    from isa.embed.templates import join_prompt
    from isa.evaluate.runner import is_stochastic, ranking_for
    from isa.ingest.dataset import PreferenceFile

    examples = list(PreferenceFile(data_file(args.data_dir,
                                             "hh_rlhf_harmless_base_test.jsonl.gz")))
    texts = {s: [join_prompt(e.prompt, getattr(e, s)) for e in examples]
             for s in ("chosen", "rejected")}
    budgets = [5.0, 10.0]
    cols = [rounds[0]["grid_percent"].index(b) for b in budgets]
    sizes = [len(folds[f]) for f in range(args.rm_folds)]
    probe = pooled(rounds[:args.rm_folds], sizes)
    order = sorted(range(2, len(labels)), key=lambda i: -np.mean(
        [probe["methods"][i]["accuracy"][c] for c in cols]))
    chosen = [0, 1] + [i for i in order if i != 1][:args.rm_methods]
    seeds_of = {i: (args.rm_seeds if is_stochastic(methods[i][1], methods[i][2]) else 1)
                for i in chosen}
    rows: dict[int, dict[float, list[dict]]] = {i: {b: [] for b in budgets} for i in chosen}
    full: list[dict] = []
    t0 = time.perf_counter()
    for f in range(args.rm_folds):
        keep = np.ones(len(hh.table), dtype=bool)
        keep[folds[f]] = False
        pool, test = hh.subset(np.flatnonzero(keep)), hh.subset(folds[f])
        # the full pool is ten times a 10% subset: one epoch holds its cost
        full.append(reward_model_scores(pool, test, np.arange(len(pool.table)), texts, 0, 1))
        for i in chosen:
            _, name, params = methods[i]
            for b in budgets:
                k = int(round(b / 100 * len(pool.table)))
                for seed in range(seeds_of[i]):
                    idx = ranking_for(pool, name, params, seed, k)[:k]
                    rows[i][b].append(reward_model_scores(pool, test, idx, texts, seed,
                                                          args.rm_epochs))
        print(f"rm fold {f} done {time.perf_counter() - t0:.0f} s", flush=True)
    n_eval = sum(len(folds[f]) for f in range(args.rm_folds))

    def mean(runs: list[dict], key: str) -> float:
        return float(np.mean([r[key] for r in runs]))

    lines = [f"## A second evaluator: a reward model fine-tuned on each subset (HH, "
             f"{args.rm_folds} of the folds, {n_eval:,} held-out pairs)", "",
             "MiniLM fine-tuned end to end with a scalar head on the Bradley–Terry loss "
             f"({args.rm_epochs} epochs on a subset, 1 on the full pool; "
             "`isa/evaluate/reward_model.py`), scored like the probe. Full pool: accuracy "
             f"{mean(full, 'accuracy'):.3f}, balanced {mean(full, 'balanced_accuracy'):.3f}. "
             "Cells: reward model accuracy / the probe's accuracy on the same folds.", "",
             "| method | " + " | ".join(f"{b:g}%" for b in budgets) + " |",
             "|---|" + "---|" * len(budgets)]
    rm_means: dict[float, list[float]] = {}
    probe_means: dict[float, list[float]] = {}
    for i in chosen:
        cells = []
        for b, c in zip(budgets, cols, strict=True):
            rm_acc = mean(rows[i][b], "accuracy")
            pr_acc = probe["methods"][i]["accuracy"][c]
            rm_means.setdefault(b, []).append(rm_acc)
            probe_means.setdefault(b, []).append(pr_acc)
            cells.append(f"{rm_acc:.3f} / {pr_acc:.3f}")
        lines.append(f"| {labels[i]} | " + " | ".join(cells) + " |")
    half = 1.96 * np.sqrt(0.25 / n_eval)
    rho = {b: float(spearmanr(rm_means[b], probe_means[b]).statistic) for b in budgets}
    lines += ["", f"95% interval of one reward-model accuracy: about ± {half:.3f} (methods "
              f"built on random: mean of {args.rm_seeds} seeds). Rank correlation of the "
              "methods under the two evaluators (Spearman): "
              + ", ".join(f"{b:g}%: {r:+.2f}" for b, r in rho.items()) + ".",
              ""]
    return lines, {"methods": [labels[i] for i in chosen], "budgets": budgets,
                   "reward_model": {labels[i]: {str(b): rows[i][b] for b in budgets}
                                    for i in chosen},
                   "full": full, "spearman": rho, "n_eval": n_eval}


def targets(results: dict) -> str:
    """The issue's targets, each stated as met or missed with its numbers."""
    out = ["## Targets", ""]
    if "hh" in results:
        rep, labels = results["hh"], results["hh"]["labels"]
        best = best_vs_random(rep, labels, "accuracy", [5.0, 10.0])
        full = rep["full"]["accuracy"]
        m = next(x for x, lab in zip(rep["methods"], labels, strict=True)
                 if lab == best["method"])
        reach = next((g for g, a in zip(rep["grid_percent"], m["accuracy"], strict=True)
                      if a >= full), None)
        met = best["lead_5%"] >= 0.03 and best["lead_10%"] >= 0.03
        out.append(f"- HH, beat random by ≥ 3 points at 5% and 10%: best method "
                   f"**{best['method']}**, +{best['lead_5%'] * 100:.1f} / "
                   f"+{best['lead_10%'] * 100:.1f} points — **{'met' if met else 'missed'}**; "
                   f"reaches the full-pool accuracy ({full:.3f}) at "
                   f"{'—' if reach is None else f'{reach:g}%'} — **"
                   f"{'met' if reach is not None and reach <= 25 else 'missed'}** (≤ 25%).")
    if "alpaca" in results:
        rep, labels = results["alpaca"], results["alpaca"]["labels"]
        best = best_vs_random(rep, labels, "balanced_accuracy", [5.0])
        i = labels.index(best["method"])
        c = rep["grid_percent"].index(5.0)
        plain = rep["methods"][i]["accuracy"][c] - rep["methods"][0]["accuracy"][c]
        met = best["lead_5%"] >= 0.02 and plain >= -0.005
        out.append(f"- AlpacaEval, length-balanced accuracy ≥ 2 points over random at 5% "
                   f"with plain accuracy level or better: **{best['method']}**, "
                   f"{best['lead_5%'] * 100:+.1f} balanced, {plain * 100:+.1f} plain — "
                   f"**{'met' if met else 'missed'}**.")
    if "noisy" in results:
        rep, labels = results["noisy"], results["noisy"]["labels"]
        c = rep["grid_percent"].index(5.0)
        i = max(range(len(labels)), key=lambda j: rep["methods"][j]["accuracy"][c])
        target = results["noisy"]["clean_full"]["accuracy"]
        acc = rep["methods"][i]["accuracy"][c]
        out.append(f"- 25%-flipped pool, best at 5% reaches the clean full-pool accuracy "
                   f"({target:.3f}): **{labels[i]}** {acc:.3f} — "
                   f"**{'met' if acc >= target else 'missed'}**.")
    if "rm" in results:
        rho = results["rm"]["spearman"]
        out.append("- The second evaluator's method order vs the probe's (Spearman): "
                   + ", ".join(f"{b:g}%: {r:+.2f}" for b, r in rho.items()) + ".")
    return "\n".join(out)


if __name__ == "__main__":
    main()
