"""Hold-out splits that never put one prompt on both sides."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import numpy as np


def split_by_prompt(prompts: Sequence[str], *, eval_fraction: float = 0.2,
                    seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Indices ``(train, eval)``: every prompt's rows land on one side only.

    The side of a prompt depends on a seeded hash of its text, not on row order, so the
    split is the same when the file is shuffled.
    """
    if not 0 < eval_fraction < 1:
        raise ValueError("eval_fraction must be in (0, 1)")
    salt = str(seed).encode()
    side = np.empty(len(prompts), dtype=bool)
    for i, p in enumerate(prompts):
        h = int.from_bytes(hashlib.blake2b(p.encode(), digest_size=8, key=salt).digest(), "big")
        side[i] = (h / 2**64) < eval_fraction
    return np.flatnonzero(~side), np.flatnonzero(side)


def kfold_by_prompt(prompts: Sequence[str], *, k: int = 5, seed: int = 0) -> list[np.ndarray]:
    """``k`` folds of indices (each the evaluation side of one round; the pool is the
    rest): every prompt's rows in one fold, folds of near-equal prompt counts, assigned
    by a seeded hash of the prompt text (so the same whatever the row order)."""
    if k < 2:
        raise ValueError("k must be at least 2")
    salt = str(seed).encode()
    distinct = sorted(set(prompts), key=lambda p: hashlib.blake2b(
        p.encode(), digest_size=8, key=salt).digest())
    fold_of = {p: i % k for i, p in enumerate(distinct)}
    folds = np.asarray([fold_of[p] for p in prompts])
    return [np.flatnonzero(folds == f) for f in range(k)]
