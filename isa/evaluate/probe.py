"""A Bradley–Terry reward probe on encoder features: the proxy alignment score.

A linear reward ``r(x) = w·e(x)`` over item embeddings, trained on a subset's pairs with
the Bradley–Terry likelihood ``P(chosen ≻ rejected) = σ(w·(e_c − e_r))`` — a logistic
regression on embedding differences, both orientations, no intercept. Its pairwise
accuracy on held-out pairs says how much preference signal the subset teaches.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

from ..errors import ConfigError


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
    accuracy: float
    ci_low: float
    ci_high: float
    n_eval: int
    n_train: int

    def to_dict(self) -> dict[str, float | int]:
        return asdict(self)


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

    def score(self, diff: np.ndarray) -> ProbeScore:
        """Pairwise accuracy (chosen scored above rejected) with a 95% interval."""
        m = self.margins(diff)
        wins = int((m > 0).sum())
        lo, hi = wilson_interval(wins, len(m))
        return ProbeScore(wins / len(m) if len(m) else 0.0, lo, hi, len(m), self.n_train_)
