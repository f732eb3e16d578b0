"""Evaluate subsets with the probe, and trace budget curves for several methods."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..embed.base import EmbeddingCache, Encoder
from ..errors import ConfigError
from ..ingest.dataset import PreferenceFile
from ..pipeline import UnitTable, embed_units, read_units
from ..select import Budget, make_method
from .curve import fit_plateau
from .probe import PreferenceProbe, ProbeScore
from .split import split_by_prompt

DEFAULT_GRID = (1.0, 2.0, 3.5, 5.0, 10.0, 25.0, 50.0, 100.0)
#: methods whose subset changes with the seed: the curve averages several seeds
STOCHASTIC = {"random", "density"}


@dataclass(slots=True)
class PairSet:
    """Pairs with their item embeddings: what methods select from and the probe trains on."""

    table: UnitTable
    X: np.ndarray  # item embeddings, rows follow table.groups
    diff: np.ndarray  # per pair: e(chosen) − e(rejected)

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
            prompt_keys=[t.prompt_keys[i] for i in np.flatnonzero(keep)])
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
    return PreferenceProbe(C=C).fit(train.diff[idx]).score(eval_set.diff)


def ranking_for(pool: PairSet, method: str, params: dict[str, Any], seed: int,
                n_select: int) -> np.ndarray:
    m = make_method(method, **{"random_state": seed, **params})
    X = pool.X if m.needs_embeddings else None
    m.fit(X, groups=pool.table.groups, meta=pool.table.meta, n_units=len(pool.table),
          n_select=n_select)
    return m.ranking_


def evaluate_subset(pool: PairSet, eval_set: PairSet, method: str, params: dict[str, Any],
                    budget: Budget, *, seeds: Sequence[int] = (0,), C: float = 1.0
                    ) -> dict[str, Any]:
    """The probe trained on the method's subset vs. on the whole pool."""
    k = budget.size(len(pool.table))
    runs = [probe_score(pool, ranking_for(pool, method, params, s, k)[:k], eval_set, C=C)
            for s in seeds]
    full = probe_score(pool, np.arange(len(pool.table)), eval_set, C=C)
    accs = [r.accuracy for r in runs]
    return {"method": method, "params": params, "budget": budget.to_dict(), "pairs": k,
            "subset": runs[0].to_dict() if len(runs) == 1 else {
                "accuracy": float(np.mean(accs)), "accuracy_sd": float(np.std(accs)),
                "runs": [r.to_dict() for r in runs]},
            "full": full.to_dict()}


def budget_curve(pool: PairSet, eval_set: PairSet, methods: Sequence[tuple[str, dict]], *,
                 grid: Sequence[float] = DEFAULT_GRID, seeds: int = 5, share: float = 0.95,
                 C: float = 1.0, progress: Callable[[str, int, int], None] | None = None
                 ) -> dict[str, Any]:
    """Probe accuracy of each method at each budget (percent of the pool); the plateau
    curve fitted per method, with the smallest budget reaching ``share`` of its gain."""
    n = len(pool.table)
    sizes = [Budget(fraction=g / 100).size(n) for g in grid]
    full = probe_score(pool, np.arange(n), eval_set, C=C)
    total = sum((seeds if name in STOCHASTIC else 1) * len(grid) for name, _ in methods)
    done = 0
    out: dict[str, Any] = {"grid_percent": list(grid), "pool_pairs": n,
                           "eval_pairs": len(eval_set.table), "full": full.to_dict(),
                           "share": share, "methods": []}
    for name, params in methods:
        runs = []
        for seed in range(seeds if name in STOCHASTIC else 1):
            ranking = ranking_for(pool, name, params, seed, max(sizes))
            accs = []
            for k in sizes:
                accs.append(probe_score(pool, ranking[:k], eval_set, C=C).accuracy)
                done += 1
                if progress:
                    progress("evaluating", done, total)
            runs.append(accs)
        acc = np.asarray(runs)
        mean = acc.mean(axis=0)
        n_eval = len(eval_set.table)
        # the interval of a mean of several seeds: the per-run binomial sd over sqrt(seeds)
        half = 1.96 * np.sqrt(mean * (1 - mean) / n_eval) / np.sqrt(acc.shape[0])
        entry: dict[str, Any] = {"method": name, "params": params, "seeds": acc.shape[0],
                                 "accuracy": mean.tolist(), "ci_half_width": half.tolist(),
                                 "runs": acc.tolist()}
        # x = 0 is the untrained probe: chance, the curve's "a" for a proxy score
        x = np.concatenate([[0.0], np.asarray(grid, dtype=float)])
        y = np.concatenate([[0.5], mean])
        try:
            fit = fit_plateau(x, y)
            x_star = fit.budget_for(share)
            reached = [g for g in grid if g >= x_star]
            entry["fit"] = fit.to_dict()
            entry["budget_for_share"] = x_star
            entry["recommended_budget_percent"] = reached[0] if reached else None
        except ValueError as exc:
            entry["fit"] = None
            entry["fit_error"] = str(exc)
        out["methods"].append(entry)
    return out
