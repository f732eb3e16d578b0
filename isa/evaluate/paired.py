"""Is one selection method's model better than another's on the same held-out pairs?

Every arm of a training yardstick is scored on the *same* evaluation pairs, so the
question is about a paired difference: per pair, was arm A right and arm B wrong? Two
sources of noise make the interval: which evaluation pairs were drawn, and which seeds
(a random subset's seed, the data order) each arm was trained with. ``paired_difference``
resamples both — the pairs once per replicate for both arms (that is the pairing), each
arm's seeds on their own — and ``mcnemar`` gives the exact test on the discordant pairs
beside it.

Outcomes are arrays of shape ``(seeds, pairs)``: 1 where the arm's model preferred the
chosen answer of that evaluation pair, else 0 (or any per-pair score in [0, 1]).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True, slots=True)
class PairedDifference:
    """Arm A's mean outcome minus arm B's, with a percentile bootstrap interval."""

    difference: float
    ci_low: float
    ci_high: float
    mean_a: float
    mean_b: float
    pairs: int
    seeds_a: int
    seeds_b: int

    @property
    def above_zero(self) -> bool:
        """The whole interval above zero: A beat B beyond the noise."""
        return self.ci_low > 0

    def to_dict(self) -> dict[str, float | int | bool]:
        return {"difference": self.difference, "ci_low": self.ci_low,
                "ci_high": self.ci_high, "mean_a": self.mean_a, "mean_b": self.mean_b,
                "pairs": self.pairs, "seeds_a": self.seeds_a, "seeds_b": self.seeds_b,
                "above_zero": self.above_zero}


def _as_outcomes(x: np.ndarray, name: str) -> np.ndarray:
    arr = np.asarray(x, dtype=np.float64)
    if arr.ndim == 1:
        arr = arr[None, :]
    if arr.ndim != 2 or arr.shape[1] == 0 or arr.shape[0] == 0:
        raise ValueError(f"{name}: expected outcomes of shape (seeds, pairs), got {arr.shape}")
    return arr


def paired_difference(a: np.ndarray, b: np.ndarray, *, n_boot: int = 2000,
                      confidence: float = 0.95, random_state: int = 0) -> PairedDifference:
    """``mean(a) - mean(b)`` over seeds and pairs, with a bootstrap over both.

    Args:
        a, b: outcomes ``(seeds, pairs)``; the same pairs, in the same order, for both.
        n_boot: bootstrap replicates.
        confidence: the interval's coverage.
        random_state: the bootstrap's seed (the interval is reproducible).
    """
    a, b = _as_outcomes(a, "a"), _as_outcomes(b, "b")
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"the arms were scored on different pairs: {a.shape[1]} vs "
                         f"{b.shape[1]}")
    if not 0 < confidence < 1:
        raise ValueError("confidence must be in (0, 1)")
    rng = np.random.default_rng(random_state)
    n = a.shape[1]
    diffs = np.empty(n_boot)
    for i in range(n_boot):
        pairs = rng.integers(0, n, n)  # the same pairs for both arms: the pairing
        seeds_a = rng.integers(0, a.shape[0], a.shape[0])
        seeds_b = rng.integers(0, b.shape[0], b.shape[0])
        diffs[i] = a[np.ix_(seeds_a, pairs)].mean() - b[np.ix_(seeds_b, pairs)].mean()
    tail = (1 - confidence) / 2
    low, high = np.quantile(diffs, [tail, 1 - tail])
    return PairedDifference(difference=float(a.mean() - b.mean()), ci_low=float(low),
                            ci_high=float(high), mean_a=float(a.mean()),
                            mean_b=float(b.mean()), pairs=n, seeds_a=a.shape[0],
                            seeds_b=b.shape[0])


@dataclass(frozen=True, slots=True)
class McNemar:
    """The exact (binomial) McNemar test on the discordant pairs."""

    a_only: int  # pairs A got right and B wrong
    b_only: int
    p_value: float


def mcnemar(a: np.ndarray, b: np.ndarray) -> McNemar:
    """McNemar's exact two-sided test; with several seeds, the sign test on each pair's
    mean outcome over its seeds (a pair is A's when A's seeds got it right more often than
    B's, a tie is no one's). With one seed an arm the two are the same test. (A seed
    majority instead would count a pair half of an even number of seeds got right as
    wrong: two seeds against one skew the test towards the one.)"""
    a, b = _as_outcomes(a, "a"), _as_outcomes(b, "b")
    if a.shape[1] != b.shape[1]:
        raise ValueError("the arms were scored on different pairs")
    mean_a, mean_b = a.mean(axis=0), b.mean(axis=0)
    x, y = int((mean_a > mean_b).sum()), int((mean_a < mean_b).sum())
    return McNemar(a_only=x, b_only=y, p_value=_binomial_two_sided(min(x, y), x + y))


def _binomial_two_sided(k: int, n: int) -> float:
    """P(X <= k or X >= n - k) for X ~ Binomial(n, 1/2): exact, in log space for big n."""
    if n == 0:
        return 1.0
    logs = [math.lgamma(n + 1) - math.lgamma(i + 1) - math.lgamma(n - i + 1) - n * math.log(2)
            for i in range(k + 1)]
    top = max(logs)
    tail = math.exp(top) * sum(math.exp(v - top) for v in logs)
    return min(1.0, 2 * tail)
