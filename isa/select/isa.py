"""ISA — Information Sampling for Alignment (Khera et al., arXiv 2411.10545, Algorithm 1)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Literal

import numpy as np
from pydantic import Field

from ..errors import ConfigError
from ..extras import require
from .base import CovarianceType, PcaDims, Seed, SelectionMethod, reduce_items, register


def isa_delta(log_likelihood: np.ndarray, bounds: tuple[float, float] | None = None
              ) -> tuple[np.ndarray, np.ndarray, float]:
    """Steps 4–5 of Algorithm 1 for per-element log-likelihoods ``l``.

    ``l' = minmax(l)``, ``p = exp(l')``, ``H(X) = -Σ p log p`` and
    ``Δ(x) = H(X) - H(X∖{x})``. With p held fixed, leaving x out removes exactly its own
    term, so ``Δ(x) = -p(x) log p(x)``: computed here directly, in O(n), which avoids
    the cancellation of subtracting two nearly equal sums. Returns ``(l', Δ, H(X))``.

    ``bounds``: the (min, max) of ``l`` over the whole data set, when ``log_likelihood``
    is one shard of it (sharded scoring); the entropy returned is then the shard's part.
    """
    ll = np.asarray(log_likelihood, dtype=np.float64)
    lo, hi = bounds if bounds is not None else (ll.min(), ll.max())
    span = hi - lo
    if span > 0:  # in place, the same arithmetic: two arrays the size of l, not five
        scaled = np.subtract(ll, lo)
        scaled /= span
    else:
        scaled = np.zeros_like(ll)
    p = np.exp(scaled)
    term = np.log(p)
    term *= p
    np.negative(term, out=term)  # = -p log p = -l' e^{l'}
    return scaled, term, float(term.sum())


def _observed_mixture(base: type, progress: Callable[[int, int], None] | None) -> type:
    """``base`` (scikit-learn's GaussianMixture) reporting every EM iteration to
    ``progress``, which may raise to stop the fit: the same arithmetic, with a place to
    notice a cancel in a fit that can take minutes."""
    if progress is None:
        return base

    class Observed(base):  # type: ignore[misc, valid-type]
        _iteration = 0

        def _m_step(self, X, log_resp, **kwargs):  # type: ignore[no-untyped-def]
            self._iteration += 1
            progress(self._iteration, self.max_iter)
            return super()._m_step(X, log_resp, **kwargs)

    return Observed


@register
class ISA(SelectionMethod):
    """Paper-faithful ISA: a Gaussian mixture over item embeddings; keep the elements whose
    removal changes the data set's entropy most (= the lowest-likelihood elements).

    Args:
        n_components: mixture components (the paper: 2).
        covariance_type: ``"diag"`` (default; full covariance in high dimension is
            impractical) or ``"full"`` (use with ``pca_components``), or ``"spherical"``,
            ``"tied"``.
        pca_components: project to this many dimensions before the mixture (None: no PCA).
        pair_reduce: how a pair's two item scores make the pair's score. ``"sum"``: the
            entropy change of removing both items (exact under the paper's fixed-p rule).
        max_fit_samples: fit the mixture on at most this many items (a seeded sample),
            then score every item; bounds the cost on millions of rows.
        max_iter, tol, reg_covar: EM settings passed to scikit-learn.
        random_state: seed of the mixture's initialisation and of the fit sample.
    """

    name = "isa"
    summary = "Paper-faithful ISA: GMM log-likelihood → entropy change Δ, keep the largest Δ"

    def __init__(self, n_components: Annotated[int, Field(ge=1, le=64)] = 2,
                 covariance_type: CovarianceType = "diag",
                 pca_components: PcaDims | None = None,
                 pair_reduce: Literal["sum", "mean", "max", "min"] = "sum",
                 max_fit_samples: Annotated[int, Field(ge=2, le=10**8)] = 200_000,
                 max_iter: Annotated[int, Field(ge=1, le=10_000)] = 100,
                 tol: Annotated[float, Field(gt=0, le=1)] = 1e-3,
                 reg_covar: Annotated[float, Field(ge=0, le=1)] = 1e-6,
                 random_state: Seed = 0) -> None:
        self.n_components = n_components
        self.covariance_type = covariance_type
        self.pca_components = pca_components
        self.pair_reduce = pair_reduce
        self.max_fit_samples = max_fit_samples
        self.max_iter = max_iter
        self.tol = tol
        self.reg_covar = reg_covar
        self.random_state = random_state

    def _check(self, n: int) -> None:
        if self.covariance_type not in ("diag", "full", "spherical", "tied"):
            raise ConfigError(f"covariance_type must be diag, full, spherical or tied, "
                              f"not {self.covariance_type!r}")
        if self.n_components < 1:
            raise ConfigError("n_components must be at least 1")
        if n < self.n_components:
            raise ConfigError(f"ISA needs at least {self.n_components} items, got {n}")

    def fit_sample(self, n_items: int) -> np.ndarray | None:
        """The items the mixture is fitted on: a seeded sample of ``max_fit_samples``
        when there are more items, else None (all). Sharded scoring fits on the same."""
        if n_items <= self.max_fit_samples:
            return None
        rng = np.random.default_rng(self.random_state)
        return np.sort(rng.choice(n_items, self.max_fit_samples, replace=False))

    def fit_model(self, X_fit: np.ndarray) -> ISA:
        """Steps 1–3: PCA (optional) and the Gaussian mixture, fitted on ``X_fit`` (all
        items or the ``fit_sample``). Sets ``pca_`` and ``mixture_``."""
        require("embed", "the isa method", "sklearn")
        from sklearn.decomposition import PCA
        from sklearn.mixture import GaussianMixture

        self.pca_ = None
        Z = X_fit
        if self.pca_components is not None:
            k = min(self.pca_components, X_fit.shape[1], X_fit.shape[0])
            self.pca_ = PCA(n_components=k, random_state=self.random_state).fit(X_fit)
            Z = self.pca_.transform(X_fit).astype(np.float32)
        gmm = _observed_mixture(GaussianMixture, getattr(self, "_progress", None))(
            n_components=self.n_components, covariance_type=self.covariance_type,
            max_iter=self.max_iter, tol=self.tol, reg_covar=self.reg_covar,
            random_state=self.random_state)
        gmm.fit(Z)
        self.mixture_ = gmm
        return self

    def log_likelihood(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Per item of ``X`` (any slice of the items, scored alone): the fitted mixture's
        log-likelihood and most likely component."""
        Z = X if self.pca_ is None else self.pca_.transform(X).astype(np.float32)
        return self.mixture_.score_samples(Z), self.mixture_.predict(Z).astype(np.int64)

    def _fit(self, X, groups, n_units, meta, n_select):  # type: ignore[no-untyped-def]
        n = X.shape[0]
        self._check(n)
        fit_idx = self.fit_sample(n)
        self.fit_model(X if fit_idx is None else X[fit_idx])
        return self.scores_from_log_likelihood(*self.log_likelihood(X), groups, n_units)

    def scores_from_log_likelihood(self, ll: np.ndarray, component: np.ndarray,
                                   groups: np.ndarray, n_units: int) -> np.ndarray:
        """Steps 4–6 from every item's log-likelihood (however it was computed, e.g.
        shard by shard on other workers): Δ per item, then per unit. Sets ``entropy_``
        and ``item_details_``; returns the unit scores."""
        scaled, delta, entropy = isa_delta(ll)
        self.entropy_ = entropy
        self.item_details_ = {
            "log_likelihood": ll,
            "scaled_log_likelihood": scaled,
            "delta": delta,
            "component": component,
        }
        return reduce_items(delta, groups, n_units, self.pair_reduce)

    def state_from_log_likelihood(self, ll: np.ndarray, component: np.ndarray,
                                  groups: np.ndarray, n_units: int) -> dict[str, np.ndarray]:
        """What ``state_dict`` would return after ``fit``, from every item's
        log-likelihood: the reduce step of sharded scoring (``load_state_dict`` it)."""
        scores = self.scores_from_log_likelihood(ll, component, groups, n_units)
        self.scores_, self.ranking_ = scores, np.argsort(-scores, kind="stable")
        self.details_ = {}
        return self.state_dict()
