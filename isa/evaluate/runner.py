"""Evaluate subsets with the probe, and trace budget curves for several methods."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..embed.base import EmbeddingCache, Encoder
from ..errors import ConfigError
from ..ingest.dataset import PreferenceFile
from ..pipeline import UnitTable, embed_units, read_units, score_units
from ..select import Budget, make_method
from ..select.base import CHOSEN_CHARS, REJECTED_CHARS
from .curve import fit_plateau
from .length import length_baseline
from .probe import PreferenceProbe, ProbeScore
from .split import split_by_prompt

DEFAULT_GRID = (1.0, 2.0, 3.5, 5.0, 10.0, 25.0, 50.0, 100.0)
METRICS = ("accuracy", "balanced_accuracy")
#: methods whose subset changes with the seed: the curve averages several seeds
STOCHASTIC = {"random", "density"}


def is_stochastic(name: str, params: dict[str, Any]) -> bool:
    """Whether a method's subset changes with its seed (then curves average seeds)."""
    return name in STOCHASTIC or any(
        is_stochastic(params[k], params.get(f"{k}_params") or {})
        for k in ("base", "quality") if params.get(k))


@dataclass(slots=True)
class PairSet:
    """Pairs with their item embeddings: what methods select from and the probe trains on."""

    table: UnitTable
    X: np.ndarray  # item embeddings, rows follow table.groups
    diff: np.ndarray  # per pair: e(chosen) − e(rejected)

    @property
    def length_diff(self) -> np.ndarray:
        """Per pair: len(chosen) − len(rejected), in characters."""
        return self.table.meta[CHOSEN_CHARS] - self.table.meta[REJECTED_CHARS]

    def with_flipped_labels(self, share: float, *, seed: int = 0) -> tuple[PairSet, np.ndarray]:
        """A copy with a seeded ``share`` of the pairs' labels reversed (chosen and
        rejected swapped), as annotator disagreement does; returns it and the mask."""
        flip = np.random.default_rng(seed).random(len(self.table)) < share
        t = self.table
        items = flip[t.groups]
        swap = {"chosen": "rejected", "rejected": "chosen"}
        labels = [swap.get(x, x) if f else x for x, f in zip(t.text_labels, items,
                                                                strict=True)]
        meta = dict(t.meta)
        if CHOSEN_CHARS in meta:
            meta[CHOSEN_CHARS] = np.where(flip, t.meta[REJECTED_CHARS], t.meta[CHOSEN_CHARS])
            meta[REJECTED_CHARS] = np.where(flip, t.meta[CHOSEN_CHARS], t.meta[REJECTED_CHARS])
        table = dataclasses.replace(t, text_labels=labels, meta=meta)
        return PairSet(table, self.X, np.where(flip[:, None], -self.diff, self.diff)), flip

    def subset(self, idx: np.ndarray) -> PairSet:
        keep = np.zeros(len(self.table), dtype=bool)
        keep[idx] = True
        item_mask = keep[self.table.groups]
        remap = -np.ones(len(self.table), dtype=np.int64)
        remap[np.flatnonzero(keep)] = np.arange(keep.sum())
        t = self.table
        table = UnitTable(
            level=t.level, template=t.template,
            row_ids=[t.row_ids[i] for i in np.flatnonzero(keep)],
            sides=[t.sides[i] for i in np.flatnonzero(keep)],
            source_rows=t.source_rows[keep],
            texts=[x for x, m in zip(t.texts, item_mask, strict=True) if m],
            text_labels=[x for x, m in zip(t.text_labels, item_mask, strict=True) if m],
            groups=remap[t.groups[item_mask]],
            meta={k: v[keep] for k, v in t.meta.items()},
            prompt_keys=[t.prompt_keys[i] for i in np.flatnonzero(keep)],
            text_keys=None if t.text_keys is None else t.text_keys[item_mask])
        return PairSet(table, self.X[item_mask], self.diff[keep])


def load_pairs(source: PreferenceFile, encoder: Encoder, *,
               cache: EmbeddingCache | None = None,
               progress: Callable[[str, int, int], None] | None = None) -> PairSet:
    """Read a paired data set and embed its items (prompt + completion, as ISA does)."""
    table, _ = read_units(source, level="pair", template="prompt_completion")
    X, _ = embed_units(table, encoder, cache=cache, progress=progress)
    labels = np.asarray(table.text_labels)
    chosen = np.empty((len(table), X.shape[1]), dtype=np.float32)
    rejected = np.empty_like(chosen)
    chosen[table.groups[labels == "chosen"]] = X[labels == "chosen"]
    rejected[table.groups[labels == "rejected"]] = X[labels == "rejected"]
    return PairSet(table, X, chosen - rejected)


def holdout(pool: PairSet, eval_set: PairSet | None, *, eval_fraction: float = 0.2,
            seed: int = 0) -> tuple[PairSet, PairSet, dict[str, Any]]:
    """The training pool and the evaluation pairs; an automatic split keeps every prompt
    on one side, and a named evaluation set loses from the pool any prompt it shares."""
    if eval_set is not None:
        shared = set(pool.table.prompt_keys) & set(eval_set.table.prompt_keys)
        keep = np.array([k not in shared for k in pool.table.prompt_keys])
        return pool.subset(np.flatnonzero(keep)), eval_set, {
            "kind": "named", "pool_pairs_dropped_for_shared_prompts": int((~keep).sum())}
    train, test = split_by_prompt(pool.table.prompt_keys, eval_fraction=eval_fraction,
                                  seed=seed)
    if len(train) == 0 or len(test) == 0:
        raise ConfigError("too few distinct prompts to split off an evaluation set")
    return pool.subset(train), pool.subset(test), {"kind": "split_by_prompt",
                                                   "eval_fraction": eval_fraction,
                                                   "seed": seed}


def probe_score(train: PairSet, idx: np.ndarray, eval_set: PairSet, *, C: float = 1.0
                ) -> ProbeScore:
    """The probe trained on ``train``'s pairs ``idx``, scored on ``eval_set`` (accuracy
    and length-balanced accuracy)."""
    return PreferenceProbe(C=C).fit(train.diff[idx]).score(eval_set.diff,
                                                           eval_set.length_diff)


def resolve_metric(metric: str, length: dict[str, Any]) -> tuple[str, str]:
    """The metric budget advice is computed on, and why: ``auto`` takes length-balanced
    accuracy when the evaluation pairs are length-dominated."""
    if metric not in METRICS + ("auto",):
        raise ConfigError(f"metric must be one of {METRICS + ('auto',)}, not {metric!r}")
    if metric != "auto":
        return metric, "asked for"
    if length["length_dominated"]:
        return "balanced_accuracy", "auto: the evaluation pairs are length-dominated"
    return "accuracy", "auto: the evaluation pairs are not length-dominated"


def ranking_for(pool: PairSet, method: str, params: dict[str, Any], seed: int,
                n_select: int) -> np.ndarray:
    m = make_method(method, **{"random_state": seed, **params})
    return score_units(pool.table, m, pool.X if m.needs_embeddings else None,
                       n_select=n_select).ranking_


def evaluate_subset(pool: PairSet, eval_set: PairSet, method: str, params: dict[str, Any],
                    budget: Budget, *, seeds: Sequence[int] = (0,), C: float = 1.0
                    ) -> dict[str, Any]:
    """The probe trained on the method's subset vs. on the whole pool, each scored by
    accuracy and length-balanced accuracy, beside the length rule on the same pairs."""
    k = budget.size(len(pool.table))
    runs = [probe_score(pool, ranking_for(pool, method, params, s, k)[:k], eval_set, C=C)
            for s in seeds]
    full = probe_score(pool, np.arange(len(pool.table)), eval_set, C=C)
    if len(runs) == 1:
        subset = runs[0].to_dict()
    else:
        subset = {"accuracy": float(np.mean([r.accuracy for r in runs])),
                  "accuracy_sd": float(np.std([r.accuracy for r in runs])),
                  "balanced_accuracy": _mean_or_none([r.balanced_accuracy for r in runs]),
                  "runs": [r.to_dict() for r in runs]}
    return {"method": method, "params": params, "budget": budget.to_dict(), "pairs": k,
            "subset": subset, "full": full.to_dict(),
            "length": length_baseline(eval_set.length_diff)}


def _mean_or_none(values: Sequence[float | None]) -> float | None:
    return None if any(v is None for v in values) else float(np.mean(values))


def budget_curve(pool: PairSet, eval_set: PairSet, methods: Sequence[tuple[str, dict]], *,
                 grid: Sequence[float] = DEFAULT_GRID, seeds: int = 5, share: float = 0.95,
                 C: float = 1.0, metric: str = "auto",
                 progress: Callable[[str, int, int], None] | None = None) -> dict[str, Any]:
    """Probe accuracy and length-balanced accuracy of each method at each budget (percent
    of the pool); the plateau curve fitted per method on ``metric`` (``auto``: balanced
    when the evaluation pairs are length-dominated), with the smallest budget reaching
    ``share`` of its gain."""
    n = len(pool.table)
    sizes = [Budget(fraction=g / 100).size(n) for g in grid]
    length = length_baseline(eval_set.length_diff)
    metric, reason = resolve_metric(metric, length)
    full = probe_score(pool, np.arange(n), eval_set, C=C)
    if metric == "balanced_accuracy" and full.balanced_accuracy is None:
        raise ConfigError("length-balanced accuracy needs evaluation pairs on both sides "
                          "(chosen longer and chosen shorter)", code="invalid_parameters")
    total = sum((seeds if is_stochastic(name, p) else 1) * len(grid) for name, p in methods)
    done = 0
    out: dict[str, Any] = {"grid_percent": list(grid), "pool_pairs": n,
                           "eval_pairs": len(eval_set.table), "full": full.to_dict(),
                           "length": length, "metric": metric, "metric_reason": reason,
                           "share": share, "methods": []}
    for name, params in methods:
        runs: list[list[ProbeScore]] = []
        for seed in range(seeds if is_stochastic(name, params) else 1):
            ranking = ranking_for(pool, name, params, seed, max(sizes))
            scores = []
            for k in sizes:
                scores.append(probe_score(pool, ranking[:k], eval_set, C=C))
                done += 1
                if progress:
                    progress("evaluating", done, total)
            runs.append(scores)
        entry: dict[str, Any] = {"method": name, "params": params, "seeds": len(runs)}
        for key in METRICS:
            values = np.asarray([[getattr(s, key) if getattr(s, key) is not None else np.nan
                                  for s in run] for run in runs])
            entry[key] = values.mean(axis=0).tolist()
            entry[f"{key}_ci_half_width"] = _half_widths(runs, key).tolist()
            entry[f"{key}_runs"] = values.tolist()
        # the accuracy curve's intervals and runs also under their earlier names
        entry["ci_half_width"] = entry["accuracy_ci_half_width"]
        entry["runs"] = entry["accuracy_runs"]
        entry |= _plateau(grid, np.asarray(entry[metric]), share)
        out["methods"].append(entry)
    return out


def _half_widths(runs: list[list[ProbeScore]], key: str) -> np.ndarray:
    """95% half-width of a mean over seeds: each run's own half-width over √seeds."""
    per_run = np.asarray([[(s.ci_high - s.ci_low) / 2 if key == "accuracy" else
                           ((s.balanced["balanced_ci_high"] - s.balanced["balanced_ci_low"]) / 2
                            if s.balanced and s.balanced["balanced_ci_low"] is not None
                            else np.nan) for s in run] for run in runs])
    return per_run.mean(axis=0) / np.sqrt(len(runs))


def _plateau(grid: Sequence[float], mean: np.ndarray, share: float) -> dict[str, Any]:
    # x = 0 is the untrained probe: chance, the curve's "a" for a proxy score
    x = np.concatenate([[0.0], np.asarray(grid, dtype=float)])
    y = np.concatenate([[0.5], mean])
    try:
        fit = fit_plateau(x, y)
    except ValueError as exc:
        return {"fit": None, "fit_error": str(exc)}
    x_star = fit.budget_for(share)
    reached = [g for g in grid if g >= x_star]
    return {"fit": fit.to_dict(), "budget_for_share": x_star,
            "recommended_budget_percent": reached[0] if reached else None}
