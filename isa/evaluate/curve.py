"""The paper's exponential plateau ``R(x) = r − (r − a)·exp(−b·x)`` (x in percent)."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np


@dataclass(frozen=True, slots=True)
class PlateauFit:
    r: float  # plateau
    a: float  # score at x = 0
    b: float  # rate (per percent of the data)
    r2: float  # coefficient of determination on the fitted points
    rmse: float

    def predict(self, x: np.ndarray | float) -> np.ndarray:
        return self.r - (self.r - self.a) * np.exp(-self.b * np.asarray(x, dtype=float))

    def budget_for(self, share: float = 0.95) -> float:
        """The budget (percent) where the curve has gained ``share`` of ``r − a``."""
        return -math.log(1 - share) / self.b if self.b > 0 else math.inf

    def to_dict(self) -> dict[str, float]:
        return asdict(self)


def fit_plateau(x: np.ndarray, y: np.ndarray) -> PlateauFit:
    """Least-squares fit of the plateau curve to (budget %, score) points."""
    from scipy.optimize import curve_fit

    x = np.asarray(x, dtype=float)
    y = np.asarray(y, dtype=float)
    if x.size < 3:
        raise ValueError("fitting r, a, b needs at least 3 points")

    def f(x: np.ndarray, r: float, a: float, b: float) -> np.ndarray:
        return r - (r - a) * np.exp(-b * x)

    lo, hi = float(y.min()), float(y.max())
    span = max(hi - lo, 1e-6)
    best = None
    for b0 in (0.01, 0.05, 0.3, 1.0):  # a few starts: the rate spans orders of magnitude
        try:
            params, _ = curve_fit(f, x, y, p0=(hi, lo, b0), maxfev=20000,
                                  bounds=([lo - 10 * span, lo - 10 * span, 1e-6],
                                          [hi + 10 * span, hi + 10 * span, 50.0]))
        except RuntimeError:
            continue
        sse = float(((f(x, *params) - y) ** 2).sum())
        if best is None or sse < best[1]:
            best = (params, sse)
    if best is None:
        raise ValueError("the plateau curve did not converge on these points")
    (r, a, b), sse = best
    sst = float(((y - y.mean()) ** 2).sum())
    return PlateauFit(float(r), float(a), float(b), 1 - sse / sst if sst > 0 else 1.0,
                      math.sqrt(sse / x.size))
