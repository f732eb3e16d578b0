"""Selectors that read the reference model's own view of each pair — the log-probability
it gives the chosen and the rejected answer (``isa.embed.reference``) — as the
preference-data selection literature does:

- ``implicit_margin``: rank by the reference's (length-normalised) log-probability margin
  of chosen over rejected; ``order="hard"`` keeps the pairs it gets most wrong first,
  ``"easy"`` the ones it already prefers, ``"middle"`` the smallest gaps (Qi et al. 2025,
  arXiv 2508.04149, select small implicit reward gaps).
- ``alignment_potential``: ``z(explicit margin) - z(|implicit margin|)``: pairs the
  labels call clear but the model finds close (the ICML 2025 alignment-potential idea).
- ``margin_bayes``: the *Less is More* rule (Deng et al. 2025, arXiv 2502.14560): the
  external margin and the implicit margin each turned into a probability that the chosen
  answer is better, combined as independent evidence, highest first.

The pipeline computes the reference columns (``REF_COLUMNS``) for a method whose
``needs_reference`` is true, and caches them by content like embeddings.
"""

from __future__ import annotations

from typing import Annotated, Literal

import numpy as np
from pydantic import Field

from ..errors import ConfigError, MethodInputError
from .base import Seed, SelectionMethod, register

REF_LOGP_CHOSEN = "ref_logp_chosen"
REF_LOGP_REJECTED = "ref_logp_rejected"
REF_MEAN_LOGP_CHOSEN = "ref_mean_logp_chosen"
REF_MEAN_LOGP_REJECTED = "ref_mean_logp_rejected"
REF_COLUMNS = (REF_LOGP_CHOSEN, REF_LOGP_REJECTED, REF_MEAN_LOGP_CHOSEN, REF_MEAN_LOGP_REJECTED)


def implicit_margins(meta: dict, *, normalize: bool) -> np.ndarray:
    """chosen minus rejected log-probability under the reference (per token when
    ``normalize``, else summed)."""
    if not all(c in meta for c in REF_COLUMNS):
        raise MethodInputError("this method needs the reference model's log-probabilities "
                               "of each pair's answers (pair-level data; the pipeline "
                               "computes them with a reference model)", code="needs_reference")
    c, r = ((REF_MEAN_LOGP_CHOSEN, REF_MEAN_LOGP_REJECTED) if normalize
            else (REF_LOGP_CHOSEN, REF_LOGP_REJECTED))
    return np.asarray(meta[c], dtype=np.float64) - np.asarray(meta[r], dtype=np.float64)


def explicit_margins(meta: dict, column: str | None) -> np.ndarray:
    """The data's own margin: ``column``, else ``margin``, else ``score_chosen -
    score_rejected`` (as the ``margin`` method reads it)."""
    if column is not None:
        if column not in meta:
            raise MethodInputError(f"the data has no numeric column {column!r}",
                                   code="missing_margin_column")
        return np.asarray(meta[column], dtype=np.float64)
    if "margin" in meta:
        return np.asarray(meta["margin"], dtype=np.float64)
    if "score_chosen" in meta and "score_rejected" in meta:
        return np.asarray(meta["score_chosen"], np.float64) - np.asarray(
            meta["score_rejected"], np.float64)
    raise MethodInputError("this method needs the data's own margin: a numeric 'margin' "
                           "column or 'score_chosen' and 'score_rejected' (map yours with "
                           "column_map)", code="missing_margin_column")


def _z(x: np.ndarray) -> np.ndarray:
    finite = np.isfinite(x)
    if not finite.any():
        return np.zeros_like(x)
    mu, sd = x[finite].mean(), x[finite].std()
    out = (x - mu) / (sd if sd > 0 else 1.0)
    return np.where(finite, out, 0.0)  # a missing margin: average evidence


def _tie_broken(scores: np.ndarray, random_state: int) -> np.ndarray:
    """The ranking by score, ties in a seeded random order (not the row order)."""
    jitter = np.random.default_rng(random_state).random(scores.size)
    return np.lexsort((jitter, -scores))


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(x, -50, 50)))


@register
class ImplicitMargin(SelectionMethod):
    """Pairs ranked by the reference model's log-probability margin of chosen over
    rejected.

    Args:
        order: ``"hard"`` (most negative margin first: the reference prefers the rejected
            answer), ``"easy"`` (largest first) or ``"middle"`` (smallest |margin| first).
        normalize: per-token mean log-probabilities (default; long answers are not
            penalised for their length) or sums.
        random_state: breaks ties.
    """

    name = "implicit_margin"
    summary = "Reference model's log-probability margin of chosen over rejected"
    needs_embeddings = False
    uses_reference = True

    def __init__(self, order: Literal["hard", "easy", "middle"] = "middle",
                 normalize: bool = True, random_state: Seed = 0) -> None:
        self.order = order
        self.normalize = normalize
        self.random_state = random_state

    def _fit(self, X, groups, n_units, meta, n_select):  # type: ignore[no-untyped-def]
        if self.order not in ("hard", "easy", "middle"):
            raise ConfigError("order must be 'hard', 'easy' or 'middle'")
        margin = implicit_margins(meta, normalize=self.normalize)
        scores = {"hard": -margin, "easy": margin, "middle": -np.abs(margin)}[self.order]
        self.details_ = {"implicit_margin": margin}
        self._ranking = _tie_broken(scores, self.random_state)
        return scores


@register
class AlignmentPotential(SelectionMethod):
    """``z(explicit margin) - z(|implicit margin|)``: clear by the labels, close to the
    reference model.

    Args:
        column: the explicit margin's column (default: ``margin``, else the scores).
        normalize: per-token implicit margins (default) or summed.
        random_state: breaks ties.
    """

    name = "alignment_potential"
    summary = "Clear by the data's margin, close by the reference model's"
    needs_embeddings = False
    uses_reference = True

    def __init__(self, column: str | None = None, normalize: bool = True,
                 random_state: Seed = 0) -> None:
        self.column = column
        self.normalize = normalize
        self.random_state = random_state

    def _fit(self, X, groups, n_units, meta, n_select):  # type: ignore[no-untyped-def]
        explicit = explicit_margins(meta, self.column)
        implicit = implicit_margins(meta, normalize=self.normalize)
        scores = _z(explicit) - _z(np.abs(implicit))
        self.details_ = {"explicit_margin": explicit, "implicit_margin": implicit}
        self._ranking = _tie_broken(scores, self.random_state)
        return scores


@register
class MarginBayes(SelectionMethod):
    """The *Less is More* rule: external and implicit margins as probabilities that the
    chosen answer is better, combined as independent evidence; the most certain first.

    ``p_ext``: the explicit margin itself when every value lies in [0, 1] (a judge's
    confidence), else ``sigmoid(margin / scale)`` with ``scale`` its standard deviation;
    ``p_imp = sigmoid(beta * implicit margin)``; the score is
    ``p_ext * p_imp / (p_ext * p_imp + (1 - p_ext)(1 - p_imp))``.

    Args:
        column: the explicit margin's column (default: ``margin``, else the scores).
        beta: the implicit margin's scale.
        normalize: per-token implicit margins (default) or summed.
        random_state: breaks ties.
    """

    name = "margin_bayes"
    summary = "External and implicit margins combined as probabilities (Less is More)"
    needs_embeddings = False
    uses_reference = True

    def __init__(self, column: str | None = None,
                 beta: Annotated[float, Field(gt=0, le=1000)] = 1.0, normalize: bool = True,
                 random_state: Seed = 0) -> None:
        self.column = column
        self.beta = beta
        self.normalize = normalize
        self.random_state = random_state

    def _fit(self, X, groups, n_units, meta, n_select):  # type: ignore[no-untyped-def]
        if not self.beta > 0:
            raise ConfigError("beta must be positive")
        explicit = explicit_margins(meta, self.column)
        implicit = implicit_margins(meta, normalize=self.normalize)
        finite = explicit[np.isfinite(explicit)]
        if finite.size and finite.min() >= 0 and finite.max() <= 1:
            p_ext = np.where(np.isfinite(explicit), explicit, 0.5)
        else:
            scale = finite.std() if finite.size and finite.std() > 0 else 1.0
            p_ext = _sigmoid(np.where(np.isfinite(explicit), explicit, 0.0) / scale)
        p_ext = np.clip(p_ext, 1e-6, 1 - 1e-6)
        p_imp = _sigmoid(self.beta * implicit)
        scores = p_ext * p_imp / (p_ext * p_imp + (1 - p_ext) * (1 - p_imp))
        self.details_ = {"p_external": p_ext, "p_implicit": p_imp,
                         "implicit_margin": implicit}
        self._ranking = _tie_broken(scores, self.random_state)
        return scores
