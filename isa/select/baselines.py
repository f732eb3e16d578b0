"""Baselines named by the paper and expected by users: random, density, k-center, margin."""

from __future__ import annotations

from typing import Annotated, Literal

import numpy as np
from pydantic import Field

from ..errors import ConfigError, MethodInputError
from .base import Seed, SelectionMethod, register, unit_features


@register
class RandomSelection(SelectionMethod):
    """Uniform random sampling without replacement (seeded).

    Args:
        random_state: the seed.
    """

    name = "random"
    summary = "Uniform random sample (seeded)"
    needs_embeddings = False

    def __init__(self, random_state: Seed = 0) -> None:
        self.random_state = random_state

    def _fit(self, X, groups, n_units, meta, n_select):  # type: ignore[no-untyped-def]
        return np.random.default_rng(self.random_state).random(n_units)


@register
class DensitySampling(SelectionMethod):
    """Sachdeva et al. 2024 density sampling: a kernel density estimate from an LSH
    sketch (angular SimHash tables; a bucket collision is the kernel), then sampling
    without replacement with probability inversely proportional to density.

    The sample order uses Efraimidis–Spirakis keys ``u^(1/w)`` with ``w = 1/density``,
    so every prefix of the ranking is a weighted sample without replacement.

    Args:
        n_tables: hash tables averaged in the estimate.
        n_bits: hyperplanes per table (more bits: a narrower kernel).
        random_state: seed of the hyperplanes and of the sampling.
    """

    name = "density"
    summary = "Inverse-propensity sampling on an LSH kernel density estimate"

    def __init__(self, n_tables: Annotated[int, Field(ge=1, le=256)] = 32,
                 n_bits: Annotated[int, Field(ge=1, le=30)] = 10,
                 random_state: Seed = 0) -> None:
        self.n_tables = n_tables
        self.n_bits = n_bits
        self.random_state = random_state

    def _fit(self, X, groups, n_units, meta, n_select):  # type: ignore[no-untyped-def]
        if not 1 <= self.n_bits <= 30:
            raise ConfigError("n_bits must be between 1 and 30")
        F = unit_features(X, groups, n_units)
        F = F - F.mean(axis=0)  # centre so hyperplanes through 0 split the data
        rng = np.random.default_rng(self.random_state)
        density = np.zeros(n_units)
        powers = 1 << np.arange(self.n_bits, dtype=np.int64)
        for _ in range(self.n_tables):
            planes = rng.standard_normal((F.shape[1], self.n_bits)).astype(np.float32)
            codes = ((F @ planes) > 0).astype(np.int64) @ powers
            _, inverse, counts = np.unique(codes, return_inverse=True, return_counts=True)
            density += counts[inverse] / n_units
        density /= self.n_tables
        weight = 1.0 / density
        u = rng.random(n_units)
        self.details_ = {"density": density, "weight": weight}
        # log(u)/w orders exactly like u^(1/w) and stays finite.
        return np.log(np.maximum(u, 1e-300)) / weight


@register
class KCenterGreedy(SelectionMethod):
    """Greedy k-center (farthest-point) coreset: each pick is the unit farthest from
    everything picked so far, so the subset covers the embedding space.

    ``scores_`` is a unit's distance to the earlier picks when it was picked (for units
    beyond the budget, their final distance to the picked set).

    Args:
        max_centers: stop the greedy search after this many picks when no budget is
            given to ``fit`` (None: order every unit; O(n²) for large n).
        random_state: seed of the first pick.
    """

    name = "kcenter"
    summary = "Greedy k-center (farthest-point) coreset for coverage"
    uses_budget_hint = True

    def __init__(self, max_centers: Annotated[int, Field(ge=1)] | None = None,
                 random_state: Seed = 0) -> None:
        self.max_centers = max_centers
        self.random_state = random_state

    def _fit(self, X, groups, n_units, meta, n_select):  # type: ignore[no-untyped-def]
        F = unit_features(X, groups, n_units)
        sq = np.einsum("ij,ij->i", F, F)
        k = n_select if n_select is not None else (self.max_centers or n_units)
        k = max(1, min(k, n_units))
        rng = np.random.default_rng(self.random_state)
        first = int(rng.integers(n_units))
        picks = [first]
        scores = np.zeros(n_units)
        scores[first] = np.inf
        mind = np.maximum(sq + sq[first] - 2.0 * (F @ F[first]), 0.0)
        mind[first] = -1.0
        for _ in range(1, k):
            nxt = int(np.argmax(mind))
            scores[nxt] = np.sqrt(mind[nxt])
            picks.append(nxt)
            d = np.maximum(sq + sq[nxt] - 2.0 * (F @ F[nxt]), 0.0)
            np.minimum(mind, d, out=mind)
            mind[picks] = -1.0
        rest = np.setdiff1d(np.arange(n_units), picks)
        scores[rest] = np.sqrt(np.maximum(mind[rest], 0.0))
        rest = rest[np.argsort(-scores[rest], kind="stable")]
        self._ranking = np.concatenate([np.asarray(picks, dtype=np.int64), rest])
        finite_max = scores[np.isfinite(scores)].max() if n_units > 1 else 0.0
        scores[first] = finite_max + 1.0
        self.details_ = {"pick_order": np.argsort(self._ranking, kind="stable")}
        return scores


@register
class MarginSelection(SelectionMethod):
    """Keep the pairs with the largest (or smallest) preference margin from the data's
    own score columns.

    Args:
        column: a numeric column holding the margin; ``None`` finds ``margin``, else
            ``score_chosen - score_rejected``.
        order: ``"high"`` keeps the clearest preferences first, ``"low"`` the closest.
        random_state: breaks ties between equal margins.
    """

    name = "margin"
    summary = "Largest preference margin from a numeric margin/score column"
    needs_embeddings = False

    def __init__(self, column: str | None = None, order: Literal["high", "low"] = "high",
                 random_state: Seed = 0) -> None:
        self.column = column
        self.order = order
        self.random_state = random_state

    def _fit(self, X, groups, n_units, meta, n_select):  # type: ignore[no-untyped-def]
        if self.order not in ("high", "low"):
            raise ConfigError("order must be 'high' or 'low'")
        if self.column is not None:
            if self.column not in meta:
                raise MethodInputError(
                    f"the data has no numeric column {self.column!r}; numeric columns: "
                    f"{sorted(meta) or 'none'}", code="missing_margin_column")
            margin = np.asarray(meta[self.column], dtype=np.float64)
        elif "margin" in meta:
            margin = np.asarray(meta["margin"], dtype=np.float64)
        elif "score_chosen" in meta and "score_rejected" in meta:
            margin = np.asarray(meta["score_chosen"], np.float64) - np.asarray(
                meta["score_rejected"], np.float64)
        else:
            raise MethodInputError(
                "method 'margin' needs a numeric 'margin' column or 'score_chosen' and "
                f"'score_rejected'; numeric columns found: {sorted(meta) or 'none'}",
                code="missing_margin_column")
        if margin.shape[0] != n_units:
            raise ConfigError("the margin column must have one value per unit")
        margin = np.where(np.isfinite(margin), margin, -np.inf if self.order == "high" else np.inf)
        signed = margin if self.order == "high" else -margin
        jitter = np.random.default_rng(self.random_state).random(n_units)
        self.details_ = {"margin": margin}
        # Ties (common: judge margins are coarse) are broken at random, not by row order.
        order = np.lexsort((jitter, -signed))
        self._ranking = order
        return signed
