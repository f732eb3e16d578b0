"""Fetch the full public preference sets the benchmarks and the larger-data tests use,
from their original repositories (needs network access to GitHub):

    python scripts/fetch_data.py --out data/full
    ISA_FULL_DATA_DIR=data/full bash scripts/test.sh        # the larger-data tests
    .venv/bin/python bench/quality.py --data-dir data/full   # the benchmarks

Writes, gzip-compressed JSON Lines:
- ``hh_rlhf_harmless_base_test.jsonl.gz``: Anthropic HH-RLHF, harmless-base test split,
  byte for byte (MIT licence).
- ``alpaca_eval_prefs_train.jsonl.gz`` / ``alpaca_eval_prefs_test.jsonl.gz``: AlpacaEval's
  pairwise annotations (Apache-2.0) by the judges ``alpaca_eval_gpt4`` and
  ``weighted_alpaca_eval_gpt4_turbo``, one pair per annotation: ``prompt`` (the
  instruction), ``chosen``/``rejected`` (the preferred output first), ``source`` (its
  ``dataset``), ``chosen_model``/``rejected_model``, ``judge``, ``margin`` =
  2·|preference − 1.5| (the judge's confidence); exact ties dropped, repeated pairs kept
  once. Prompts are split 80/20 into train/test by a hash of their text, so no prompt is
  in both. The team's copy (42,035 / 10,520 pairs, 644 / 161 prompts) followed the same
  pair rules with its own 80/20 prompt split, which was not recorded: a rebuild holds the
  same kind of data, not byte-identical files (and more pairs if the repository grew).
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import json
import sys
import urllib.request
from collections.abc import Iterable, Iterator
from pathlib import Path

HH_URL = ("https://raw.githubusercontent.com/anthropics/hh-rlhf/master/"
          "harmless-base/test.jsonl.gz")
ALPACA_REPO = "tatsu-lab/alpaca_eval"
ALPACA_JUDGES = ("alpaca_eval_gpt4", "weighted_alpaca_eval_gpt4_turbo")
TEST_SHARE = 0.2


def _get(url: str) -> bytes:
    req = urllib.request.Request(url, headers={"User-Agent": "isa-service-fetch-data"})
    with urllib.request.urlopen(req, timeout=120) as resp:
        return resp.read()


def alpaca_annotation_paths(tree: dict) -> list[str]:
    """``results/<model>/<judge>/annotations.json`` files of the judges we use."""
    return sorted(e["path"] for e in tree.get("tree", [])
                  if e["path"].endswith("/annotations.json")
                  and e["path"].startswith("results/")
                  and e["path"].split("/")[-2] in ALPACA_JUDGES)


def alpaca_pairs(annotations: Iterable[dict]) -> Iterator[dict]:
    """One preference pair per annotation (ties and incomplete annotations dropped)."""
    for a in annotations:
        p = a.get("preference")
        if p is None or p == 1.5 or not a.get("output_1") or not a.get("output_2"):
            continue
        first = p < 1.5
        yield {"prompt": a["instruction"],
               "chosen": a["output_1"] if first else a["output_2"],
               "rejected": a["output_2"] if first else a["output_1"],
               "source": a.get("dataset"),
               "chosen_model": a.get("generator_1") if first else a.get("generator_2"),
               "rejected_model": a.get("generator_2") if first else a.get("generator_1"),
               "judge": a.get("annotator"), "margin": round(2 * abs(p - 1.5), 4)}


def is_test_prompt(prompt: str) -> bool:
    h = int.from_bytes(hashlib.sha256(prompt.encode()).digest()[:8], "big")
    return h / 2**64 < TEST_SHARE


def _write(path: Path, rows: Iterable[dict]) -> int:
    n = 0
    tmp = path.with_suffix(".tmp")
    with gzip.open(tmp, "wt", encoding="utf-8") as fh:
        for r in rows:
            fh.write(json.dumps(r, ensure_ascii=False) + "\n")
            n += 1
    tmp.replace(path)
    return n


def fetch_alpaca(out: Path) -> None:
    tree = json.loads(_get(f"https://api.github.com/repos/{ALPACA_REPO}/git/trees/main"
                           "?recursive=1"))
    paths = alpaca_annotation_paths(tree)
    print(f"alpaca_eval: {len(paths)} annotation files", file=sys.stderr)
    seen: set[str] = set()
    train: list[dict] = []
    test: list[dict] = []
    for i, path in enumerate(paths, 1):
        raw = _get(f"https://raw.githubusercontent.com/{ALPACA_REPO}/main/{path}")
        for row in alpaca_pairs(json.loads(raw)):
            key = hashlib.sha256(json.dumps([row["prompt"], row["chosen"], row["rejected"],
                                             row["judge"]]).encode()).hexdigest()
            if key not in seen:
                seen.add(key)
                (test if is_test_prompt(row["prompt"]) else train).append(row)
        print(f"  {i}/{len(paths)} {path}", file=sys.stderr)
    print(f"train {_write(out / 'alpaca_eval_prefs_train.jsonl.gz', train):,} pairs, "
          f"test {_write(out / 'alpaca_eval_prefs_test.jsonl.gz', test):,} pairs",
          file=sys.stderr)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("data/full"), help="target folder")
    parser.add_argument("--only", choices=("hh", "alpaca"), help="fetch one set")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    if args.only in (None, "hh"):
        (args.out / "hh_rlhf_harmless_base_test.jsonl.gz").write_bytes(_get(HH_URL))
        print("hh_rlhf_harmless_base_test.jsonl.gz written", file=sys.stderr)
    if args.only in (None, "alpaca"):
        fetch_alpaca(args.out)


if __name__ == "__main__":
    main()
