"""Selection methods from the preference-data literature: they read the data's own
verdicts (which answer was chosen) through an out-of-fold reward model, and compose
(filter → score → diversify).

The reward model is the Bradley–Terry probe of ``isa.evaluate``: a logistic regression
on ``e(chosen) − e(rejected)``. It is *cross-fitted*: units are split into folds by
prompt, and each unit is scored by a probe trained on the other folds only, so no pair
is scored by a model that saw it (or another answer to its prompt).
"""

from __future__ import annotations

from typing import Annotated, Literal

import numpy as np
from pydantic import Field

from ..errors import ConfigError, MethodInputError
from ..extras import require
from .base import (
    CHOSEN_CHARS,
    PROMPT_GROUP,
    REJECTED_CHARS,
    Cosine,
    Folds,
    InverseReg,
    Seed,
    SelectionMethod,
    make_method,
    pair_differences,
    register,
    subset_units,
    unit_features,
)


def prompt_folds(meta: dict, n_units: int, n_folds: int, random_state: int) -> np.ndarray:
    """A fold per unit; the units of one prompt share a fold (seeded, row-order free)."""
    if n_folds < 2:
        raise ConfigError("n_folds must be at least 2")
    prompts = (np.asarray(meta[PROMPT_GROUP], dtype=np.int64) if PROMPT_GROUP in meta
               else np.arange(n_units))
    ids, inverse = np.unique(prompts, return_inverse=True)
    if ids.size < n_folds:
        raise MethodInputError(f"cross-fitting needs at least {n_folds} distinct prompts, "
                               f"found {ids.size}", code="too_few_prompts")
    perm = np.random.default_rng(random_state).permutation(ids.size)
    return (perm % n_folds)[inverse]


def cross_fit_margins(diff: np.ndarray, folds: np.ndarray, *, C: float = 1.0) -> np.ndarray:
    """Out-of-fold reward margins ``r(chosen) − r(rejected)``: unit i's margin comes from
    a probe fitted on the units of every fold but i's."""
    from ..evaluate.probe import PreferenceProbe

    margins = np.empty(diff.shape[0])
    for f in np.unique(folds):
        held = folds == f
        margins[held] = PreferenceProbe(C=C).fit(diff[~held]).margins(diff[held])
    return margins


class _CrossFitted(SelectionMethod):
    """Shared parameters and the out-of-fold margins of the preference methods."""

    def __init__(self, n_folds: Folds = 5, C: InverseReg = 1.0, random_state: Seed = 0) -> None:
        self.n_folds = n_folds
        self.C = C
        self.random_state = random_state

    def _oof_margins(self, X: np.ndarray, groups: np.ndarray, n_units: int,
                     meta: dict) -> np.ndarray:
        diff = pair_differences(X, groups, n_units, self._item_labels, self.name)
        folds = prompt_folds(meta, n_units, self.n_folds, self.random_state)
        margins = cross_fit_margins(diff, folds, C=self.C)
        self.details_ = {"oof_margin": margins, "fold": folds}
        return margins


@register
class ConsistencySelection(_CrossFitted):
    """Easy-first (Selective DPO, ICML 2025; confident learning): rank pairs by how
    strongly an out-of-fold reward model agrees with their label.

    Args:
        order: ``"easy"`` (largest agreement first), ``"hard"`` (smallest first) or
            ``"ambiguous"`` (margin closest to zero first).
        n_folds: cross-fitting folds (grouped by prompt).
        C: the probe's inverse regularisation.
        random_state: seed of the fold assignment.
    """

    name = "consistency"
    summary = "Out-of-fold reward model's agreement with each pair's label (easy first)"

    def __init__(self, order: Literal["easy", "hard", "ambiguous"] = "easy", n_folds: Folds = 5,
                 C: InverseReg = 1.0, random_state: Seed = 0) -> None:
        super().__init__(n_folds=n_folds, C=C, random_state=random_state)
        self.order = order

    def _fit(self, X, groups, n_units, meta, n_select):  # type: ignore[no-untyped-def]
        if self.order not in ("easy", "hard", "ambiguous"):
            raise ConfigError("order must be 'easy', 'hard' or 'ambiguous'")
        m = self._oof_margins(X, groups, n_units, meta)
        return {"easy": m, "hard": -m, "ambiguous": -np.abs(m)}[self.order]


@register
class LabelCleaning(_CrossFitted):
    """Drop pairs whose label the out-of-fold reward model confidently rejects, then run
    ``base`` on the rest (PrefCleanBench, NeurIPS 2025). Issues are found by cleanlab's
    confident learning (``find_label_issues``) on both orientations of every pair; the
    dropped pairs go last, the least confidently wrong first.

    Args:
        base: the method that ranks the kept pairs; ``base_params``: its parameters.
        n_folds, C, random_state: as for ``consistency``.
    """

    name = "clean"
    summary = "Drop pairs an out-of-fold reward model confidently disagrees with, then base"

    def __init__(self, base: str = "random", base_params: dict | None = None,
                 n_folds: Folds = 5, C: InverseReg = 1.0, random_state: Seed = 0) -> None:
        super().__init__(n_folds=n_folds, C=C, random_state=random_state)
        self.base = base
        self.base_params = base_params

    def _fit(self, X, groups, n_units, meta, n_select):  # type: ignore[no-untyped-def]
        require("embed", "label cleaning", "cleanlab", "sklearn")
        from cleanlab.filter import find_label_issues

        margins = self._oof_margins(X, groups, n_units, meta)
        p_label = 1 / (1 + np.exp(-margins))  # P(chosen ≻ rejected) out of fold
        # both orientations: label 1 "first is chosen" with p, label 0 with 1 - p
        pred = np.concatenate([np.stack([1 - p_label, p_label], 1),
                               np.stack([p_label, 1 - p_label], 1)])
        labels = np.concatenate([np.ones(n_units, int), np.zeros(n_units, int)])
        flagged = find_label_issues(labels, pred)
        issue = flagged[:n_units] | flagged[n_units:]
        keep = ~issue
        if not keep.any():
            raise MethodInputError("every pair was flagged as a label issue",
                                   code="all_pairs_flagged")
        inner = make_method(self.base, **{"random_state": self.random_state,
                                          **(self.base_params or {})})
        inner.fit(**subset_units(keep, X if inner.needs_embeddings else None, groups, meta,
                                 self._item_labels), n_select=n_select,
                  progress=self._progress)
        kept_idx, dropped_idx = np.flatnonzero(keep), np.flatnonzero(issue)
        ranking = np.concatenate([kept_idx[inner.ranking_],
                                  dropped_idx[np.argsort(-margins[dropped_idx],
                                                         kind="stable")]])
        self._ranking = ranking
        self.details_ |= {"label_issue": issue, "p_label": p_label}
        scores = np.empty(n_units)
        scores[ranking] = -np.arange(n_units, dtype=np.float64)  # rank as a score
        return scores


@register
class QualityDiversity(SelectionMethod):
    """Quality, then diversity (the DEITA / Superfiltering pattern for pairs): walk the
    units in the order of a quality method, skipping any whose embedding is a near
    duplicate (cosine above ``threshold``) of one already kept, and keeping at most
    ``per_prompt_cap`` per prompt, until the budget is filled; the rest follow in
    quality order.

    Args:
        quality: the method whose ranking is the quality order; ``quality_params``: its
            parameters.
        threshold: cosine similarity above which a unit counts as a near duplicate.
        per_prompt_cap: most units kept per prompt (None: no cap).
        random_state: passed to the quality method.
    """

    name = "quality_diversity"
    summary = "A quality order, skipping near-duplicates, at most N per prompt"
    uses_budget_hint = True

    def __init__(self, quality: str = "consistency", quality_params: dict | None = None,
                 threshold: Cosine = 0.9,
                 per_prompt_cap: Annotated[int, Field(ge=1)] | None = 2,
                 random_state: Seed = 0) -> None:
        self.quality = quality
        self.quality_params = quality_params
        self.threshold = threshold
        self.per_prompt_cap = per_prompt_cap
        self.random_state = random_state

    def _fit(self, X, groups, n_units, meta, n_select):  # type: ignore[no-untyped-def]
        if not -1 <= self.threshold <= 1:
            raise ConfigError("threshold is a cosine similarity, in [-1, 1]")
        if self.per_prompt_cap is not None and self.per_prompt_cap < 1:
            raise ConfigError("per_prompt_cap must be at least 1 (or null)")
        inner = make_method(self.quality, **{"random_state": self.random_state,
                                             **(self.quality_params or {})})
        inner.fit(X, groups=groups, meta=meta, n_units=n_units, n_select=n_select,
                  item_labels=self._item_labels, progress=self._progress)
        F = unit_features(X, groups, n_units).astype(np.float64)
        F /= np.maximum(np.linalg.norm(F, axis=1, keepdims=True), 1e-12)
        prompts = (np.asarray(meta[PROMPT_GROUP], dtype=np.int64) if PROMPT_GROUP in meta
                   else np.arange(n_units))
        target = n_units if n_select is None else n_select
        kept: list[int] = []
        per_prompt: dict[int, int] = {}
        skipped = np.zeros(n_units, dtype=bool)
        for u in inner.ranking_:
            if len(kept) == target:
                break
            if kept and float((F[kept] @ F[u]).max()) > self.threshold:
                skipped[u] = True
                continue
            if self.per_prompt_cap is not None and per_prompt.get(prompts[u], 0) >= \
                    self.per_prompt_cap:
                skipped[u] = True
                continue
            kept.append(u)
            per_prompt[prompts[u]] = per_prompt.get(prompts[u], 0) + 1
        chosen = np.zeros(n_units, dtype=bool)
        chosen[kept] = True
        rest = inner.ranking_[~chosen[inner.ranking_]]
        self._ranking = np.concatenate([np.asarray(kept, dtype=np.int64), rest])
        self.details_ = {"quality_score": inner.scores_, "skipped": skipped}
        scores = np.empty(n_units)
        scores[self._ranking] = -np.arange(n_units, dtype=np.float64)
        return scores


@register
class LengthBalanced(SelectionMethod):
    """Any method with its budget split evenly between pairs whose chosen answer is the
    longer one and pairs whose chosen answer is not, each side in the base method's
    order: the subset cannot teach only "the longer answer wins".

    Args:
        base: the method whose order is kept within each side; ``base_params``: its
            parameters. (The embeddings are computed even for a base that needs none.)
        random_state: passed to the base method.
    """

    name = "length_balanced"
    summary = "A base method's order, alternating chosen-longer and chosen-shorter pairs"

    def __init__(self, base: str = "random", base_params: dict | None = None,
                 random_state: Seed = 0) -> None:
        self.base = base
        self.base_params = base_params
        self.random_state = random_state

    def _fit(self, X, groups, n_units, meta, n_select):  # type: ignore[no-untyped-def]
        if CHOSEN_CHARS not in meta or REJECTED_CHARS not in meta:
            raise MethodInputError("length_balanced needs pairs' answer lengths (pair data "
                                   "read by the pipeline)", code="needs_pairs")
        inner = make_method(self.base, **{"random_state": self.random_state,
                                          **(self.base_params or {})})
        inner.fit(X, groups=groups, meta=meta, n_units=n_units, n_select=n_select,
                  item_labels=self._item_labels, progress=self._progress)
        longer = (np.asarray(meta[CHOSEN_CHARS]) > np.asarray(meta[REJECTED_CHARS]))
        sides = [inner.ranking_[longer[inner.ranking_]],
                 inner.ranking_[~longer[inner.ranking_]]]
        # interleave: position k of a side gets key k (+0.5 for the second), so every
        # prefix holds the two sides as evenly as they allow
        key = np.empty(n_units)
        for offset, side in zip((0.0, 0.5), sides, strict=True):
            key[side] = np.arange(side.size) + offset
        self._ranking = np.lexsort((np.arange(n_units), key))
        self.details_ = {"chosen_longer": longer, "base_score": inner.scores_}
        scores = np.empty(n_units)
        scores[self._ranking] = -np.arange(n_units, dtype=np.float64)
        return scores
