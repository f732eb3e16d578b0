"""Length-aware scoring of pairwise predictions.

Judges of preference data often prefer the longer answer (AlpacaEval's GPT-4 judges in
83–89% of pairs), so "the longer answer wins" alone can score high and a reward model
can look good by learning length. Every accuracy is therefore reported beside:

- the **length rule's** accuracy on the same pairs (chosen predicted as the longer one;
  a tie counts half);
- **length-balanced accuracy**: the mean of the accuracy on pairs whose chosen answer is
  the longer one and on pairs whose chosen answer is the shorter one (ties left out), so
  a pure length rule scores exactly 0.5 — with its 95% interval and the smaller side's
  pair count;
- a warning when the evaluation pairs are **length-dominated** (one side above 75%).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

#: above this share of one side, the evaluation set is called length-dominated
LENGTH_DOMINATED = 0.75


def balanced_accuracy(correct: np.ndarray, length_diff: np.ndarray) -> dict[str, Any]:
    """Length-balanced accuracy of per-pair outcomes.

    Args:
        correct: per pair, whether the prediction preferred the chosen answer.
        length_diff: per pair, len(chosen) − len(rejected) (characters).

    Returns ``balanced_accuracy`` (None when a side has no pairs), its 95% interval
    (normal approximation of the mean of two independent proportions), the accuracy and
    pair count of each side, and ``n_min_side``.
    """
    correct = np.asarray(correct, dtype=bool)
    diff = np.asarray(length_diff, dtype=np.float64)
    longer, shorter = diff > 0, diff < 0
    n_l, n_s = int(longer.sum()), int(shorter.sum())
    acc_l = float(correct[longer].mean()) if n_l else None
    acc_s = float(correct[shorter].mean()) if n_s else None
    out: dict[str, Any] = {"accuracy_chosen_longer": acc_l, "accuracy_chosen_shorter": acc_s,
                           "n_chosen_longer": n_l, "n_chosen_shorter": n_s,
                           "n_length_tied": int(diff.size - n_l - n_s),
                           "n_min_side": min(n_l, n_s)}
    if acc_l is None or acc_s is None:
        return out | {"balanced_accuracy": None, "balanced_ci_low": None,
                      "balanced_ci_high": None}
    bal = (acc_l + acc_s) / 2
    half = 1.96 * 0.5 * math.sqrt(acc_l * (1 - acc_l) / n_l + acc_s * (1 - acc_s) / n_s)
    return out | {"balanced_accuracy": bal, "balanced_ci_low": max(0.0, bal - half),
                  "balanced_ci_high": min(1.0, bal + half)}


def length_baseline(length_diff: np.ndarray) -> dict[str, Any]:
    """What "the longer answer wins" scores on these pairs, and whether they are
    length-dominated."""
    diff = np.asarray(length_diff, dtype=np.float64)
    n = diff.size
    longer, shorter = float((diff > 0).mean()) if n else 0.0, float((diff < 0).mean()) if n \
        else 0.0
    rule = longer + 0.5 * (1 - longer - shorter)
    dominated = max(longer, shorter) > LENGTH_DOMINATED
    side = "longer" if longer >= shorter else "shorter"
    return {
        "length_rule_accuracy": rule,
        "chosen_longer_share": longer,
        "chosen_shorter_share": shorter,
        "length_dominated": dominated,
        "warning": (f"the evaluation pairs are length-dominated: the chosen answer is the "
                    f"{side} one in {max(longer, shorter):.0%} of them, so a rule that only "
                    f"looks at length scores {max(rule, 1 - rule):.3f}; judge by "
                    "length-balanced accuracy"
                    if dominated else None),
    }
