"""ISA as map/reduce over shards of units, for pools too large for one process.

The paper's method in three steps that each hold a bounded amount of data:

1. **fit** — the mixture (and PCA) on the seeded sample ``ISA.fit_sample`` picks, the
   same items a single-process fit uses (``ISAModel``: a few arrays, sent to every
   shard);
2. **map** — per shard of whole units (a pair's two items together): the items'
   log-likelihoods (``score_shard``), kept with the shard, and their (min, max);
3. **reduce** — the global bounds make every shard's entropy change Δ and unit scores
   exactly what one process computes (``shard_scores``), and each shard's best ``k``
   merge into the top ``k`` (``merge_top_k``, ties to the lower unit).

So the subset and its order equal ``ISA().fit(all of X)``'s (scores to float32 rounding,
as a PCA projection of one shard may round differently); the tests check it on real data. Peak
memory per step is one shard plus ``k`` candidates per shard, whatever the pool's size.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from .base import reduce_items
from .isa import ISA, isa_delta


@dataclass
class ISAModel:
    """A fitted ISA mixture as plain arrays (for an artifact, or a message to a task)."""

    state: dict[str, np.ndarray]

    @classmethod
    def fit(cls, method: ISA, X_fit: np.ndarray) -> ISAModel:
        """Fit ``method``'s PCA and mixture on ``X_fit`` (the rows ``method.fit_sample``
        names, in order; all rows when it names none)."""
        method._check(X_fit.shape[0])
        method.fit_model(X_fit)
        gmm, pca = method.mixture_, method.pca_
        state = {"weights": gmm.weights_, "means": gmm.means_,
                 "covariances": gmm.covariances_,
                 "precisions_cholesky": gmm.precisions_cholesky_}
        if pca is not None:
            state |= {"pca_components": pca.components_, "pca_mean": pca.mean_,
                      "pca_explained_variance": pca.explained_variance_}
        return cls(state)

    def restore(self, method: ISA) -> ISA:
        """Give ``method`` (built with the same parameters) the fitted PCA and mixture."""
        from sklearn.decomposition import PCA
        from sklearn.mixture import GaussianMixture

        s = self.state
        gmm = GaussianMixture(n_components=method.n_components,
                              covariance_type=method.covariance_type)
        gmm.weights_, gmm.means_ = s["weights"], s["means"]
        gmm.covariances_, gmm.precisions_cholesky_ = s["covariances"], s["precisions_cholesky"]
        gmm.n_features_in_ = s["means"].shape[1]
        # what GaussianMixture.fit derives from the Cholesky factors (predict reads it)
        gmm.precisions_ = _precisions(s["precisions_cholesky"], method.covariance_type)
        gmm.converged_, gmm.n_iter_, gmm.lower_bound_ = True, 0, np.nan
        method.mixture_ = gmm
        method.pca_ = None
        if "pca_components" in s:
            pca = PCA(n_components=s["pca_components"].shape[0])
            pca.components_, pca.mean_ = s["pca_components"], s["pca_mean"]
            pca.explained_variance_ = s["pca_explained_variance"]
            pca.n_components_ = s["pca_components"].shape[0]
            pca.n_features_in_ = s["pca_mean"].shape[0]
            pca.whiten = False
            method.pca_ = pca
        return method


def _precisions(chol: np.ndarray, covariance_type: str) -> np.ndarray:
    if covariance_type == "full":
        return np.einsum("kij,klj->kil", chol, chol)
    if covariance_type == "tied":
        return chol @ chol.T
    return chol ** 2


@dataclass
class ShardScores:
    """The map step's output for one shard: per item log-likelihood and component."""

    log_likelihood: np.ndarray
    component: np.ndarray

    @property
    def bounds(self) -> tuple[float, float]:
        return float(self.log_likelihood.min()), float(self.log_likelihood.max())


def score_shard(method: ISA, X_shard: np.ndarray) -> ShardScores:
    """Map: the items of one shard under the fitted mixture (``ISAModel.restore`` first)."""
    ll, component = method.log_likelihood(X_shard)
    return ShardScores(ll, component)


def merge_bounds(bounds: Iterable[tuple[float, float]]) -> tuple[float, float]:
    """Reduce the shards' (min, max) of the log-likelihood to the data set's."""
    lows, highs = zip(*bounds, strict=True)
    return min(lows), max(highs)


def shard_scores(method: ISA, shard: ShardScores, groups: np.ndarray, n_units: int,
                 bounds: tuple[float, float]) -> np.ndarray:
    """A shard's unit scores (Δ reduced per unit by ``pair_reduce``) under the global
    ``bounds``. ``groups``: item → unit index within the shard (whole units only)."""
    _, delta, _ = isa_delta(shard.log_likelihood, bounds)
    return reduce_items(delta, groups, n_units, method.pair_reduce)


def top_k(scores: np.ndarray, k: int, offset: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A shard's best ``k`` units: (scores, global unit indices), best first; ties go to
    the lower index, as ``SelectionMethod.ranking_`` orders them."""
    order = np.argsort(-scores, kind="stable")[:min(k, scores.shape[0])]
    return scores[order], order.astype(np.int64) + offset


def merge_top_k(parts: Iterable[tuple[np.ndarray, np.ndarray]], k: int
                ) -> tuple[np.ndarray, np.ndarray]:
    """The best ``k`` of several shards' ``top_k`` results: (scores, unit indices), best
    first, ties to the lower index. Holds at most ``k`` candidates per shard."""
    parts = list(parts)
    if not parts:
        return np.empty(0), np.empty(0, dtype=np.int64)
    scores = np.concatenate([p[0] for p in parts])
    units = np.concatenate([p[1] for p in parts])
    order = np.lexsort((units, -scores))[:k]
    return scores[order], units[order]
