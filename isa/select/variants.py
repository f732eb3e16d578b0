"""Beyond the paper: ISA variants that add diversity or a preference signal. Each is a
named method, measured against random and paper-faithful ISA in bench/quality.py."""

from __future__ import annotations

from typing import Annotated

import numpy as np
from pydantic import Field

from ..errors import ConfigError
from .base import (
    PROMPT_GROUP,
    Cosine,
    CovarianceType,
    PcaDims,
    Seed,
    SelectionMethod,
    Unit,
    register,
    unit_features,
)
from .baselines import MarginSelection
from .isa import ISA


def stratified_order(scores: np.ndarray, strata: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Interleave strata in proportion to their sizes, best-scored first within each:
    a unit's key is its fractional position inside its stratum."""
    position = np.empty(scores.shape[0])
    for s in np.unique(strata):
        idx = np.flatnonzero(strata == s)
        order = idx[np.argsort(-scores[idx], kind="stable")]
        position[order] = (np.arange(order.size) + 0.5) / order.size
    key = -position
    return np.lexsort((-scores, -key)), key


def _first_item(groups: np.ndarray, n_units: int) -> np.ndarray:
    _, first = np.unique(groups, return_index=True)
    return first


class _ISABased(SelectionMethod):
    def __init__(self, covariance_type: CovarianceType = "diag",
                 pca_components: PcaDims | None = None,
                 random_state: Seed = 0) -> None:
        self.covariance_type = covariance_type
        self.pca_components = pca_components
        self.random_state = random_state

    def _isa(self, X: np.ndarray, groups: np.ndarray, n_units: int) -> ISA:
        isa = ISA(covariance_type=self.covariance_type, pca_components=self.pca_components,
                  random_state=self.random_state)
        isa.fit(X, groups=groups, n_units=n_units, progress=self._progress)
        self.item_details_ = isa.item_details_
        return isa


@register
class ISAComponentStratified(_ISABased):
    """ISA within each mixture component, components kept in proportion to their size
    (pure ISA can take most of its picks from one mode).

    Args:
        covariance_type, pca_components: as for ``isa``.
        random_state: seed.
    """

    name = "isa_component"
    summary = "ISA stratified by GMM component (proportional)"

    def _fit(self, X, groups, n_units, meta, n_select):  # type: ignore[no-untyped-def]
        isa = self._isa(X, groups, n_units)
        strata = isa.item_details_["component"][_first_item(groups, n_units)]
        self._ranking, key = stratified_order(isa.scores_, strata)
        self.details_ = {"stratum": strata, "isa_score": isa.scores_}
        return key


@register
class ISAClusterStratified(_ISABased):
    """ISA within k-means clusters of the units, clusters kept in proportion to size:
    the information score picks inside each region of the embedding space.

    Args:
        n_clusters: k-means clusters.
        covariance_type, pca_components: as for ``isa``.
        random_state: seed of the mixture and of k-means.
    """

    name = "isa_cluster"
    summary = "ISA stratified by k-means cluster (proportional)"

    def __init__(self, n_clusters: Annotated[int, Field(ge=1, le=10_000)] = 20,
                 covariance_type: CovarianceType = "diag",
                 pca_components: PcaDims | None = None, random_state: Seed = 0) -> None:
        self.n_clusters = n_clusters
        super().__init__(covariance_type, pca_components, random_state)

    def _fit(self, X, groups, n_units, meta, n_select):  # type: ignore[no-untyped-def]
        from sklearn.cluster import KMeans

        isa = self._isa(X, groups, n_units)
        F = unit_features(X, groups, n_units)
        k = max(1, min(self.n_clusters, n_units))
        strata = KMeans(k, n_init=1, random_state=self.random_state).fit_predict(F)
        self._ranking, key = stratified_order(isa.scores_, strata)
        self.details_ = {"stratum": strata, "isa_score": isa.scores_}
        return key


@register
class ISADedup(_ISABased):
    """ISA's order, skipping a unit that is a near-duplicate (cosine above ``threshold``)
    of one already kept; skipped units go to the end.

    Args:
        threshold: cosine similarity that counts as a duplicate.
        covariance_type, pca_components: as for ``isa``.
        random_state: seed.
    """

    name = "isa_dedup"
    summary = "ISA with near-duplicate removal while walking its order"
    uses_budget_hint = True

    def __init__(self, threshold: Cosine = 0.9, covariance_type: CovarianceType = "diag",
                 pca_components: PcaDims | None = None, random_state: Seed = 0) -> None:
        self.threshold = threshold
        super().__init__(covariance_type, pca_components, random_state)

    def _fit(self, X, groups, n_units, meta, n_select):  # type: ignore[no-untyped-def]
        isa = self._isa(X, groups, n_units)
        F = unit_features(X, groups, n_units)
        F = F / np.maximum(np.linalg.norm(F, axis=1, keepdims=True), 1e-12)
        limit = n_select or n_units
        kept: list[int] = []
        skipped: list[int] = []
        bank = np.empty((min(limit, n_units), F.shape[1]), dtype=np.float32)
        for u in isa.ranking_:
            if len(kept) >= limit:
                skipped.append(int(u))
                continue
            if kept and float((bank[:len(kept)] @ F[u]).max()) > self.threshold:
                skipped.append(int(u))
                continue
            bank[len(kept)] = F[u]
            kept.append(int(u))
        self._ranking = np.asarray(kept + skipped, dtype=np.int64)
        key = np.empty(n_units)
        key[self._ranking] = -np.arange(n_units, dtype=float)
        self.details_ = {"isa_score": isa.scores_}
        return key


@register
class ISAMarginBlend(_ISABased):
    """A blend of ISA's information score and the data's preference margin, by rank:
    ``alpha · rank(ISA) + (1 − alpha) · rank(margin)`` (ranks as fractions).

    Args:
        alpha: weight of ISA (1: pure ISA; 0: pure margin).
        column: the margin column (None: ``margin`` or ``score_chosen − score_rejected``).
        covariance_type, pca_components: as for ``isa``.
        random_state: seed.
    """

    name = "isa_margin"
    summary = "Rank blend of ISA's information score and the preference margin"

    def __init__(self, alpha: Unit = 0.5, column: str | None = None,
                 covariance_type: CovarianceType = "diag", pca_components: PcaDims | None = None,
                 random_state: Seed = 0) -> None:
        self.alpha = alpha
        self.column = column
        super().__init__(covariance_type, pca_components, random_state)

    def _fit(self, X, groups, n_units, meta, n_select):  # type: ignore[no-untyped-def]
        if not 0 <= self.alpha <= 1:
            raise ConfigError("alpha must be in [0, 1]")
        isa = self._isa(X, groups, n_units)
        margin = MarginSelection(column=self.column, random_state=self.random_state).fit(
            None, n_units=n_units, meta=meta)
        pct = lambda order: np.argsort(order, kind="stable") / max(n_units - 1, 1)  # noqa: E731
        blended = self.alpha * pct(isa.ranking_) + (1 - self.alpha) * pct(margin.ranking_)
        self.details_ = {"isa_score": isa.scores_, "margin": margin.details_["margin"]}
        return -blended


@register
class ISAPromptRoundRobin(_ISABased):
    """ISA one prompt at a time: first the highest-Δ pair of every prompt (in ISA order),
    then every prompt's second, and so on. Preference sets repeat prompts (AlpacaEval:
    805 instructions, many model pairs each); pure ISA spends its budget on the pairs of
    a few rare prompts.

    Args:
        covariance_type, pca_components: as for ``isa``.
        random_state: seed.
    """

    name = "isa_prompt"
    summary = "ISA round-robin over prompts (best pair of each prompt first)"

    def _fit(self, X, groups, n_units, meta, n_select):  # type: ignore[no-untyped-def]
        from ..errors import MethodInputError

        if PROMPT_GROUP not in meta:
            raise MethodInputError("isa_prompt needs the prompt groups the pipeline adds "
                                   "(meta '_prompt_group')", code="missing_prompt_groups")
        isa = self._isa(X, groups, n_units)
        prompt = np.asarray(meta[PROMPT_GROUP], dtype=np.int64)
        isa_pos = np.empty(n_units, dtype=np.int64)
        isa_pos[isa.ranking_] = np.arange(n_units)
        # rank of each unit inside its prompt, by ISA order
        order = np.lexsort((isa_pos, prompt))
        within = np.empty(n_units, dtype=np.int64)
        starts = np.r_[0, np.flatnonzero(np.diff(prompt[order])) + 1]
        sizes = np.diff(np.r_[starts, n_units])
        within[order] = np.arange(n_units) - np.repeat(starts, sizes)
        self._ranking = np.lexsort((isa_pos, within))
        self.details_ = {"isa_score": isa.scores_, "rank_in_prompt": within}
        key = np.empty(n_units)
        key[self._ranking] = -np.arange(n_units, dtype=float)
        return key
