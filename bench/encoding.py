"""Encoding: what an encoder, a runtime or a truncation costs and changes.

    .venv/bin/python bench/encoding.py [--pairs 1200] [--all-settings]

On HH-RLHF harmless (where the length of an answer is no shortcut) and on AlpacaEval
(where it is), every encoder embeds the same prompt + completion texts with the library's
own encoders (``isa.make_encoder``), each beside the default (sentence, torch, bf16 where
the CPU has it, 256 tokens) measured in the same run: texts/s and the ratio to the
default, cosine to the default's vectors (where the widths match), the overlap of the 5%
subsets of paper ``isa`` and of the recommended ``length_balanced`` (base consistency)
with the default's, and the quality yardstick: a linear probe over 5 prompt-grouped folds
(accuracy and length-balanced accuracy; full pool, ``isa`` 5%, ``length_balanced`` 5%),
each with the spread over folds.

Rows: sentence torch bf16 (default), sentence OpenVINO bf16 (when ``openvino`` is
installed), static (a token table distilled from the same MiniLM: ``encoder: static``);
``--all-settings`` adds 128/64 tokens, float32 and OpenVINO f32. The static table's one-off
distillation is timed apart. On a CUDA machine the GPU settings are ``bench/gpu.py``'s.
Writes bench/results/encoding.md.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from data_dir import add_data_dir, data_file  # noqa: E402

os.environ.setdefault("HF_HUB_OFFLINE", "1")
OUT = ROOT / "bench" / "results"
DOMAINS = {"HH-RLHF harmless": "hh_rlhf_harmless_base_test.jsonl.gz",
           "AlpacaEval": "alpaca_eval_prefs_test.jsonl.gz"}
METHODS = {"isa": ("isa", {}), "length_balanced": ("length_balanced", {"base": "consistency"})}


def _settings(all_settings: bool, openvino: bool) -> list[tuple[str, dict]]:
    rows = [("sentence torch (default)", {"name": "sentence"})]
    if openvino:
        rows.append(("sentence openvino bf16", {"name": "sentence", "backend": "openvino",
                                                "precision": "bfloat16"}))
    rows.append(("static (distilled MiniLM)", {"name": "static"}))
    if all_settings:
        rows += [("sentence torch, 128 tokens", {"name": "sentence", "max_seq_length": 128}),
                 ("sentence torch, 64 tokens", {"name": "sentence", "max_seq_length": 64}),
                 ("sentence torch float32", {"name": "sentence", "precision": "float32"})]
        if openvino:
            rows.append(("sentence openvino f32", {"name": "sentence", "backend": "openvino",
                                                   "precision": "float32"}))
    return rows


def _pool(path: Path, pairs: int):  # noqa: ANN202 - (UnitTable, labels, folds)
    from isa import PreferenceFile
    from isa.evaluate.split import kfold_by_prompt
    from isa.pipeline import read_units

    table, _ = read_units(PreferenceFile(path), level="pair", template="prompt_completion")
    if pairs and pairs < len(table):
        from isa.evaluate.runner import PairSet

        # a seeded sample of whole pairs (the files are sorted by source, not shuffled)
        keep = np.sort(np.random.default_rng(0).choice(len(table), pairs, replace=False))
        table = PairSet(table, np.zeros((len(table.texts), 1)),
                        np.zeros((len(table), 1))).subset(keep).table
    return table, np.asarray(table.text_labels), kfold_by_prompt(table.prompt_keys, k=5,
                                                                 seed=0)


def _quality(table, labels, folds, X: np.ndarray) -> dict:  # noqa: ANN001
    """Probe accuracy (plain and length-balanced) over the folds, and each method's 5%
    subset of the whole pool."""
    from isa import Budget
    from isa.evaluate.runner import PairSet, probe_score, ranking_for

    chosen = np.empty((len(table), X.shape[1]), dtype=np.float32)
    rejected = np.empty_like(chosen)
    chosen[table.groups[labels == "chosen"]] = X[labels == "chosen"]
    rejected[table.groups[labels == "rejected"]] = X[labels == "rejected"]
    pairs = PairSet(table, X, chosen - rejected)
    budget = Budget(fraction=0.05)
    scores: dict[str, list[tuple[float, float]]] = {"full": [], **{m: [] for m in METHODS}}
    for f in range(len(folds)):
        train_idx = np.setdiff1d(np.arange(len(table)), folds[f])
        train, test = pairs.subset(train_idx), pairs.subset(folds[f])
        k = budget.size(len(train.table))
        picks = {"full": np.arange(len(train.table)),
                 **{m: ranking_for(train, method, params, 0, k)[:k]
                    for m, (method, params) in METHODS.items()}}
        for name, idx in picks.items():
            s = probe_score(train, idx, test)
            scores[name].append((s.accuracy, s.balanced_accuracy or float("nan")))
    k = budget.size(len(table))
    subsets = {m: set(ranking_for(pairs, method, params, 0, k)[:k].tolist())
               for m, (method, params) in METHODS.items()}
    return {"scores": {n: np.asarray(v) for n, v in scores.items()}, "subsets": subsets}


def _cell(values: np.ndarray) -> str:
    """Mean ± the spread of the fold means (standard error)."""
    return f"{values.mean():.3f} ± {values.std(ddof=1) / np.sqrt(len(values)):.3f}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_data_dir(ap)
    ap.add_argument("--pairs", type=int, default=1200,
                    help="pairs sampled per domain (seed 0); 0: the whole file")
    ap.add_argument("--all-settings", action="store_true",
                    help="also truncation, float32 and OpenVINO f32 rows")
    ap.add_argument("--domains", default=",".join(DOMAINS),
                    help="comma-separated, of: " + ", ".join(DOMAINS))
    args = ap.parse_args()

    import importlib.util

    import torch

    from isa import make_encoder
    from isa.embed.static import distill_static, distilled_folder

    openvino = importlib.util.find_spec("openvino") is not None
    if not openvino:
        print("openvino is not installed: its rows are skipped")
    already = (distilled_folder() / "model.safetensors").is_file()
    t = time.perf_counter()
    distill_static()
    distill_s = None if already else time.perf_counter() - t
    settings = _settings(args.all_settings, openvino)
    sections = []
    for domain in [d.strip() for d in args.domains.split(",")]:
        table, labels, folds = _pool(data_file(args.data_dir, DOMAINS[domain]), args.pairs)
        texts = table.texts
        print(f"== {domain}: {len(texts):,} texts of {len(table):,} pairs; torch threads "
              f"{torch.get_num_threads()}", flush=True)
        rows, ref = [], None
        for label, spec in settings:
            enc = make_encoder(device="cpu", **spec)
            t = time.perf_counter()
            enc.encode(texts[:32])  # load (OpenVINO compiles here) and warm up
            load_s = time.perf_counter() - t
            t = time.perf_counter()
            X = enc.encode(texts)
            seconds = time.perf_counter() - t
            q = _quality(table, labels, folds, X)
            if ref is None:
                ref = (X, q["subsets"])
            same = X.shape[1] == ref[0].shape[1]
            cos = (X * ref[0]).sum(1) if same else None
            row = {"label": label, "name": enc.name, "dim": X.shape[1], "load_s": load_s,
                   "texts_s": len(texts) / seconds, "scores": q["scores"],
                   "cos": (float(cos.min()), float(cos.mean())) if cos is not None else None,
                   "overlap": {m: len(q["subsets"][m] & ref[1][m]) / len(ref[1][m])
                               for m in METHODS}}
            print({k: v for k, v in row.items() if k != "scores"},
                  {n: v.mean(0).round(3).tolist() for n, v in q["scores"].items()}, flush=True)
            rows.append(row)
        sections.append((domain, len(table), len(texts), rows))
    text = _report(sections, args, distill_s, torch.get_num_threads())
    print(text)
    (OUT / "encoding.md").write_text(text)


def _report(sections, args, distill_s, threads) -> str:  # noqa: ANN001
    lines = [
        "# Encoders: speed against what they change (bench/encoding.py)",
        "",
        f"Each domain: {args.pairs or 'all'} pairs sampled (seed 0), their prompt + completion "
        f"texts embedded by each encoder on the CPU, torch threads {threads}. Beside the first "
        "row, measured in the same run: texts/s ratio, cosine to its vectors (same width "
        "only), overlap of the 5% subsets (paper `isa`; `length_balanced` base consistency, "
        "the README's recommendation), and the probe (5 prompt-grouped folds, mean ± standard "
        "error over folds): accuracy / length-balanced accuracy, trained on the full pool, "
        "`isa` 5% and `length_balanced` 5%.",
        "",
        "The static table is distilled once from the packaged MiniLM: "
        + (f"{distill_s:.0f} s in this run." if distill_s is not None
           else "it was already distilled (run once with an empty model cache to time it)."),
    ]
    for domain, n_pairs, n_texts, rows in sections:
        base = rows[0]["texts_s"]
        lines += ["", f"## {domain}: {n_texts:,} texts of {n_pairs:,} pairs", "",
                  "| encoder | name | dim | texts/s | × default | load s | cosine min / mean "
                  "| overlap isa / lb | probe full: acc / bal | isa 5%: acc / bal "
                  "| lb 5%: acc / bal |",
                  "|---|---|---|---|---|---|---|---|---|---|---|"]
        for r in rows:
            s = r["scores"]
            cos = f"{r['cos'][0]:.4f} / {r['cos'][1]:.5f}" if r["cos"] else "n/a"
            cells = [f"{_cell(s[n][:, 0])} / {_cell(s[n][:, 1])}"
                     for n in ("full", "isa", "length_balanced")]
            lines.append(
                f"| {r['label']} | `{r['name']}` | {r['dim']} | {r['texts_s']:,.0f} | "
                f"{r['texts_s'] / base:.2f} | {r['load_s']:.1f} | {cos} | "
                f"{r['overlap']['isa']:.0%} / {r['overlap']['length_balanced']:.0%} | "
                + " | ".join(cells) + " |")
    flags = " --all-settings" if args.all_settings else ""
    lines += ["", f"Regenerate: `.venv/bin/python bench/encoding.py --pairs {args.pairs}{flags}`"]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
