"""A Bradley–Terry reward probe on encoder features: the proxy alignment score.

A linear reward ``r(x) = w·e(x)`` over item embeddings, trained on a subset's pairs with
the Bradley–Terry likelihood ``P(chosen ≻ rejected) = σ(w·(e_c − e_r))`` — a logistic
regression on embedding differences, both orientations, no intercept. Its pairwise
accuracy on held-out pairs says how much preference signal the subset teaches.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from ..errors import ConfigError
from ..extras import require
from .length import balanced_accuracy


def wilson_interval(successes: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """95% Wilson score interval of a proportion (well-behaved near 0 and 1)."""
    if n == 0:
        return 0.0, 1.0
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


@dataclass(frozen=True, slots=True)
class ProbeScore:
    """Pairwise accuracy with its 95% interval and, when the pairs' answer lengths are
    known, the length-balanced accuracy (see ``length.balanced_accuracy``)."""

    accuracy: float
    ci_low: float
    ci_high: float
    n_eval: int
    n_train: int
    balanced: dict[str, Any] | None = None

    @property
    def balanced_accuracy(self) -> float | None:
        return self.balanced["balanced_accuracy"] if self.balanced else None

    def to_dict(self) -> dict[str, Any]:
        out = {k: v for k, v in asdict(self).items() if k != "balanced"}
        return out | (self.balanced or {})


def score_margins(margins: np.ndarray, *, n_train: int = 0,
                  length_diff: np.ndarray | None = None) -> ProbeScore:
    """Pairwise accuracy of reward margins ``r(chosen) − r(rejected)`` (a pair counts as
    right when its margin is positive), length-balanced when ``length_diff`` is given."""
    m = np.asarray(margins, dtype=np.float64)
    correct = m > 0
    wins = int(correct.sum())
    lo, hi = wilson_interval(wins, len(m))
    balanced = balanced_accuracy(correct, length_diff) if length_diff is not None else None
    return ProbeScore(wins / len(m) if len(m) else 0.0, lo, hi, len(m), n_train, balanced)


class PreferenceProbe:
    """Bradley–Terry probe. ``C`` is the inverse L2 strength of the logistic regression.

    Args:
        C: inverse regularisation strength.
        max_iter: solver iterations.
    """

    def __init__(self, C: float = 1.0, max_iter: int = 1000) -> None:
        self.C = C
        self.max_iter = max_iter

    def fit(self, diff: np.ndarray) -> PreferenceProbe:
        """``diff``: (n_pairs, d) = e(chosen) − e(rejected)."""
        require("embed", "the evaluation probe", "sklearn")
        from sklearn.linear_model import LogisticRegression

        diff = np.asarray(diff, dtype=np.float64)
        if diff.ndim != 2 or diff.shape[0] < 1:
            raise ConfigError("the probe needs at least one training pair")
        X = np.vstack([diff, -diff])
        y = np.concatenate([np.ones(len(diff)), np.zeros(len(diff))])
        model = LogisticRegression(C=self.C, fit_intercept=False, max_iter=self.max_iter)
        self.coef_ = model.fit(X, y).coef_.ravel()
        self.n_train_ = int(diff.shape[0])
        return self

    def margins(self, diff: np.ndarray) -> np.ndarray:
        """Reward margin ``r(chosen) − r(rejected)`` of each pair."""
        return np.asarray(diff, dtype=np.float64) @ self.coef_

    def score(self, diff: np.ndarray, length_diff: np.ndarray | None = None) -> ProbeScore:
        """Pairwise accuracy (chosen scored above rejected) with a 95% interval, and the
        length-balanced accuracy when the pairs' ``length_diff`` is given."""
        return score_margins(self.margins(diff), n_train=self.n_train_,
                             length_diff=length_diff)
