"""The DPO yardstick: does a selection method's subset train a better policy than a random
subset of the same size? Every arm trains the same policy from the same start and is
scored on the *same* held-out pairs; each method is reported as its paired difference to
random (bootstrap over evaluation pairs and seeds, McNemar beside it).

    .venv/bin/python bench/dpo.py --domain hh --budgets 0.05,0.1 --seeds 0,1,2
    .venv/bin/python bench/dpo.py --report            # the table from what has run

- Domains: ``hh`` (HH-RLHF harmless, split by a hash of the prompt into a pool and an
  evaluation half; ``--split-salt`` picks another split to confirm on) and ``alpaca``
  (AlpacaEval: a pool sampled from the train file, ``--eval-pairs`` held-out pairs from
  the test file, whose prompts the train file never has).
- Candidates: ``bench/dpo_candidates.json``, committed before a run (chosen on the
  proxies, on one split); ``random`` is always an arm.
- Outcome per evaluation pair: the policy's implicit reward margin
  ``(log π(c) − log π_ref(c)) − (log π(r) − log π_ref(r)) > 0``. The reference's
  log-probabilities are computed once per text and cached by content (the same for every
  arm), the policy's once per arm.
- Resumable: every finished arm is appended to ``bench/results/dpo_runs.jsonl`` (with its
  per-pair outcomes); a run stopped and started again skips what is there, and
  ``--report`` writes ``bench/results/dpo.md`` from all of it.
- ``--tiny``: a few pairs, the tiny random model and one training step, for the test that
  keeps this script running (tests/bench/test_dpo_bench.py) and for a dry run anywhere.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import json
import os
import random
import shlex
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
from data_dir import add_data_dir, data_file  # noqa: E402  (bench/ is on the path)

os.environ.setdefault("HF_HUB_OFFLINE", "1")
OUT = ROOT / "bench" / "results"
CANDIDATES = ROOT / "bench" / "dpo_candidates.json"
#: reference log-probabilities an earlier run computed (the HH evaluation half's 2,000
#: texts, smollm2-135m fp32, 256 tokens: 39-52 minutes on 2 CPU cores), copied into the
#: cache when it lacks them. Keyed by content and by model, precision and length, so
#: another split, model or length just misses and computes its own
SEED_CACHE = ROOT / "bench" / "dpo_reference_cache"


# --- data ------------------------------------------------------------------------------


def _prompt_half(prompt: str, salt: str) -> int:
    return hashlib.sha256(f"{salt}:{prompt}".encode()).digest()[0] & 1


def _read(path: Path) -> list[str]:
    with gzip.open(path, "rt", encoding="utf-8") as fh:
        return [line for line in fh if line.strip()]


def domain_files(args: argparse.Namespace, tmp: Path) -> tuple[Path, Path]:
    """(pool file, evaluation file) as JSON Lines in ``tmp``."""
    if args.tiny:
        lines = _read(ROOT / "examples" / "hh_rlhf_harmless_sample.jsonl.gz")[:60]
        pool, held = lines[:40], lines[40:]
    elif args.domain == "hh":
        from isa.ingest.shapes import HH_ASSISTANT

        lines = _read(data_file(args.data_dir, "hh_rlhf_harmless_base_test.jsonl.gz"))
        prompt = [json.loads(x)["chosen"].rsplit(HH_ASSISTANT, 1)[0] for x in lines]
        halves = [_prompt_half(p, args.split_salt) for p in prompt]
        pool = [x for x, h in zip(lines, halves, strict=True) if h == 0]
        held = [x for x, h in zip(lines, halves, strict=True) if h == 1]
    else:
        train = _read(data_file(args.data_dir, "alpaca_eval_prefs_train.jsonl.gz"))
        test = _read(data_file(args.data_dir, "alpaca_eval_prefs_test.jsonl.gz"))
        pool = random.Random(f"pool:{args.split_salt}").sample(train, args.pool_pairs)
        held = random.Random(f"eval:{args.split_salt}").sample(test, len(test))
    if args.eval_pairs and not args.tiny:
        held = held[:args.eval_pairs]
    (tmp / "pool.jsonl").write_text("".join(pool), encoding="utf-8")
    (tmp / "eval.jsonl").write_text("".join(held), encoding="utf-8")
    return tmp / "pool.jsonl", tmp / "eval.jsonl"


# --- one arm ---------------------------------------------------------------------------


def arm_key(arm: dict[str, Any]) -> str:
    keys = ("domain", "split_salt", "method", "budget", "seed", "model", "eval_pairs",
            "train_config")
    return json.dumps({k: arm[k] for k in keys}, sort_keys=True)


def completed(path: Path) -> dict[str, dict[str, Any]]:
    if not path.is_file():
        return {}
    runs = [json.loads(x) for x in path.read_text().splitlines() if x.strip()]
    return {arm_key(r): r for r in runs}


class Yardstick:
    """The parts every arm shares: the pool, the evaluation pairs with their reference
    log-probabilities (computed once), the base model, the caches."""

    def __init__(self, args: argparse.Namespace, tmp: Path) -> None:
        from isa import PreferenceFile
        from isa.align import ModelRegistry
        from isa.embed.base import DiskEmbeddingCache
        from isa.embed.reference import SUM, ReferenceScorer, pair_text
        from isa.ingest.records import render_text

        self.args = args
        pool_path, eval_path = domain_files(args, tmp)
        self.pool = PreferenceFile(pool_path)
        self.held = list(PreferenceFile(eval_path))
        # a registry name, or a model folder laid on a machine beforehand
        self.model_path = (Path(args.model) if Path(args.model).is_dir()
                           else ModelRegistry().resolve(args.model))
        args.cache_dir.mkdir(parents=True, exist_ok=True)
        for seed in SEED_CACHE.glob("*.npz"):
            if not (args.cache_dir / seed.name).exists():
                shutil.copyfile(seed, args.cache_dir / seed.name)
        self.cache = DiskEmbeddingCache(args.cache_dir)
        self.reference = ReferenceScorer(str(self.model_path), device=args.device,
                                         precision="float32", max_length=args.max_length,
                                         batch_size=args.eval_batch_size)
        self.prompts = [render_text(e.prompt) for e in self.held]
        self.chosen = [render_text(e.chosen or "") for e in self.held]
        self.rejected = [render_text(e.rejected or "") for e in self.held]
        texts = [pair_text(p, c) for p, c in zip(self.prompts, self.chosen, strict=True)] + \
            [pair_text(p, r) for p, r in zip(self.prompts, self.rejected, strict=True)]
        from isa.embed.base import embed_texts

        t = time.perf_counter()
        ref, stats = embed_texts(texts, self.reference, cache=self.cache)
        self.cache.save()
        n = len(self.held)
        self.ref_chosen, self.ref_rejected = ref[:n, SUM], ref[n:, SUM]
        self.length_diff = np.array([len(c) - len(r) for c, r in
                                     zip(self.chosen, self.rejected, strict=True)])
        print(f"reference: {n:,} evaluation pairs, {stats.embedded:,} texts scored, "
              f"{stats.cached:,} cached, {time.perf_counter() - t:.0f} s", flush=True)

    def encoder(self) -> Any:
        from isa.embed.factory import make_encoder

        return make_encoder("sentence", device=self.args.device)

    def evaluate(self, policy: Any, tok: Any) -> dict[str, Any]:
        from isa.embed.reference import SUM, sequence_logps
        from isa.evaluate.length import balanced_accuracy

        t = time.perf_counter()
        kw = dict(max_length=self.args.max_length, batch_size=self.args.eval_batch_size)
        # one call for both answers: a pair's prompt runs once for the two
        both = sequence_logps(policy, tok, self.prompts * 2, self.chosen + self.rejected,
                              **kw)[:, SUM]
        pc, pr = both[:len(self.held)], both[len(self.held):]
        margin = (pc - self.ref_chosen) - (pr - self.ref_rejected)
        right = margin > 0
        return {"accuracy": float(right.mean()),
                "balanced_accuracy": balanced_accuracy(right, self.length_diff)[
                    "balanced_accuracy"],
                "margin_mean": float(margin.mean()),
                "outcomes": "".join("1" if x else "0" for x in right),
                "eval_s": round(time.perf_counter() - t, 1)}

    def run_arm(self, spec: str, budget: float, seed: int, out_dir: Path) -> dict[str, Any]:
        from isa import Budget, make_method, run_selection
        from isa.align import AlignConfig, run_alignment
        from isa.cli import parse_method_spec

        name, params = parse_method_spec(spec)
        t = time.perf_counter()
        result = run_selection(self.pool, make_method(name, **{"random_state": seed, **params}),
                               Budget(fraction=budget), encoder=self.encoder,
                               reference=self.reference, cache=self.cache)
        self.cache.save()
        keep = {result.units.row_ids[i] for i in np.flatnonzero(result.selected)}
        train = [e for e in self.pool if e.row_id in keep]
        selected_s = time.perf_counter() - t
        cfg = AlignConfig(method="dpo", **self.train_config(), seed=seed)
        t = time.perf_counter()
        r = run_alignment(train, self.model_path, out_dir, cfg, device=self.args.device,
                          evaluate=self.evaluate)
        return {"train_pairs": len(train), "trained": r.examples_trained, "steps": r.steps,
                "selection_s": round(selected_s, 1), "train_s": round(r.seconds, 1),
                "train_eval_s": round(time.perf_counter() - t, 1), **(r.evaluation or {})}

    def train_config(self) -> dict[str, Any]:
        a = self.args
        return {"epochs": a.epochs, "batch_size": a.batch_size, "max_length": a.max_length,
                "learning_rate": a.learning_rate, "beta": 0.1, "lora": not a.full,
                **({"max_steps": a.max_steps} if a.max_steps else {})}


# --- the report ------------------------------------------------------------------------


def report(runs: list[dict[str, Any]], path: Path, command: str) -> str:
    """The table: per domain, split and budget, each method beside random."""
    from isa.evaluate.paired import mcnemar, paired_difference

    lines = ["# The DPO yardstick (bench/dpo.py)", "",
             "Each method's policy against random's on the same held-out pairs: accuracy of "
             "the implicit reward, the paired difference to random with its 95% bootstrap "
             "interval (over evaluation pairs and seeds), McNemar's exact p (with several "
             "seeds, the sign test on each pair's mean outcome over its seeds), and "
             "length-balanced accuracy (the mean of the chosen-longer and "
             "chosen-shorter accuracies, which 'the longer answer wins' cannot game).", ""]
    groups: dict[tuple, dict[str, list[dict[str, Any]]]] = {}
    for r in runs:
        g = (r["domain"], r["split_salt"], r["budget"], r["model"], r["eval_pairs"])
        groups.setdefault(g, {}).setdefault(r["method"], []).append(r)
    for (domain, salt, budget, model, n_eval), arms in sorted(groups.items()):
        lines += [f"## {domain}, split {salt!r}, {budget:.1%} of the pool, {model}, "
                  f"{n_eval:,} evaluation pairs", "",
                  "| method | seeds | accuracy | vs random (95% interval) | McNemar p | "
                  "length-balanced | s per arm (training, evaluation) |",
                  "|---|---|---|---|---|---|---|"]
        base = arms.get("random")
        base_m = _outcomes(base) if base else None
        for method, rs in sorted(arms.items(), key=lambda kv: kv[0] != "random"):
            m = _outcomes(rs)
            diff = "—"
            p = "—"
            if base_m is not None and method != "random" and m.shape[1] == base_m.shape[1]:
                d = paired_difference(m, base_m)
                diff = f"{d.difference:+.3f} [{d.ci_low:+.3f}, {d.ci_high:+.3f}]" + (
                    " **above 0**" if d.above_zero else "")
                p = f"{mcnemar(m, base_m).p_value:.3g}"
            bal = [r["balanced_accuracy"] for r in rs if r.get("balanced_accuracy") is not None]
            secs = f"{np.mean([r['selection_s'] + r['train_eval_s'] for r in rs]):,.0f}"
            split = [r for r in rs if "train_s" in r]  # (arms before these were recorded)
            if split:
                secs += (f" ({np.mean([r['train_s'] for r in split]):,.0f}, "
                         f"{np.mean([r['eval_s'] for r in split]):,.0f})")
            lines.append(f"| {method} | {len(rs)} | {m.mean():.3f} | {diff} | {p} | "
                         f"{np.mean(bal):.3f} | {secs} |" if bal else
                         f"| {method} | {len(rs)} | {m.mean():.3f} | {diff} | {p} | — | "
                         f"{secs} |")
        lines.append("")
    lines += [f"Regenerate (appends what is missing, then writes this table): `{command}`", ""]
    text = "\n".join(lines)
    path.write_text(text)
    return text


def _outcomes(runs: list[dict[str, Any]]) -> np.ndarray:
    return np.array([[c == "1" for c in r["outcomes"]] for r in runs], dtype=float)


# --- main ------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--domain", choices=("hh", "alpaca"), default="hh")
    ap.add_argument("--methods", help="';'-separated specs (default: the candidates file)")
    ap.add_argument("--budgets", default="0.1", help="comma-separated pool fractions")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--split-salt", default="0", help="another salt: another split")
    ap.add_argument("--eval-pairs", type=int, default=1000)
    ap.add_argument("--pool-pairs", type=int, default=8000, help="alpaca: pool size")
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--epochs", type=float, default=2.0)
    ap.add_argument("--max-steps", type=int, default=0)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--eval-batch-size", type=int, default=16)
    ap.add_argument("--max-length", type=int, default=256)
    ap.add_argument("--learning-rate", type=float, default=5e-5)
    ap.add_argument("--full", action="store_true", help="full fine-tuning instead of LoRA")
    ap.add_argument("--runs", type=Path, default=OUT / "dpo_runs.jsonl")
    ap.add_argument("--table", type=Path, default=OUT / "dpo.md")
    ap.add_argument("--cache-dir", type=Path, default=OUT / "tmp" / "dpo_cache")
    ap.add_argument("--report", action="store_true", help="only write the table")
    ap.add_argument("--tiny", action="store_true", help="a dry run at tiny size")
    add_data_dir(ap)
    args = ap.parse_args(argv)
    if args.tiny:
        args.model, args.max_steps, args.max_length, args.batch_size = (
            "tiny-llama-random", 1, 64, 2)
        args.methods = args.methods or "random;implicit_margin"
    command = ".venv/bin/python bench/dpo.py " + shlex.join(argv if argv is not None
                                                          else sys.argv[1:])
    if not args.report:
        run_matrix(args)
    runs = list(completed(args.runs).values())
    print(report(runs, args.table, command))


def run_matrix(args: argparse.Namespace) -> None:
    specs = (args.methods.split(";") if args.methods else
             json.loads(CANDIDATES.read_text())["methods"])
    specs = ["random", *[s for s in specs if s != "random"]]
    done = completed(args.runs)
    args.runs.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        stick = None
        for budget in (float(b) for b in args.budgets.split(",")):
            for spec in specs:
                for seed in (int(s) for s in args.seeds.split(",")):
                    arm = {"domain": "tiny" if args.tiny else args.domain,
                           "split_salt": args.split_salt, "method": spec, "budget": budget,
                           "seed": seed, "model": args.model}
                    if stick is None:
                        stick = Yardstick(args, Path(tmp))
                    arm |= {"eval_pairs": len(stick.held), "train_config": stick.train_config()}
                    if arm_key(arm) in done:
                        continue
                    try:
                        arm |= stick.run_arm(spec, budget, seed, Path(tmp) / "arm")
                    except Exception as exc:  # noqa: BLE001 - a method the data cannot serve
                        code = getattr(exc, "code", type(exc).__name__)
                        print(f"skipped {spec} ({budget:g}, seed {seed}): {code}: {exc}",
                              flush=True)
                        break
                    with args.runs.open("a") as fh:  # after every arm: resumable
                        fh.write(json.dumps(arm) + "\n")
                    done[arm_key(arm)] = arm
                    print(json.dumps({k: v for k, v in arm.items() if k != "outcomes"}),
                          flush=True)


if __name__ == "__main__":
    main()
