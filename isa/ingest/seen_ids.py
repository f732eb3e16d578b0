"""The ids a pass over a file has met, in 16 bytes an id instead of a Python dict's ~120.

A reader must know, row by row, whether an id was used before (the ``duplicate_id``
error, the numbering of exact duplicate rows). A ``dict`` of ids held 1.2 GB at 10 million
rows, the largest part of a reading task's memory. Here each id is a 64-bit hash kept
in a sorted numpy array beside the row that first used it; the newest ids wait in a
small dict that is merged in every ``merge_every`` ids, so a lookup is one dict probe and
one binary search.

64 bits are what the content-addressed row ids are already (16 hex digits of SHA-256):
two different ids of a 10-million-row file share a hash with a probability of ~3e-6.
"""

from __future__ import annotations

import hashlib

import numpy as np


def id_key(row_id: str) -> int:
    """The 64-bit key of a user-given id."""
    return int.from_bytes(hashlib.blake2b(row_id.encode(), digest_size=8).digest(), "little")


class SeenIds:
    """Keys met so far, each with the row that first used it, and how often each key
    came back (duplicates are rare: those counts are a plain dict)."""

    def __init__(self, merge_every: int = 1 << 18) -> None:
        self.merge_every = merge_every
        self._keys = np.empty(0, dtype=np.uint64)
        self._rows = np.empty(0, dtype=np.int64)
        self._recent: dict[int, int] = {}
        self._repeats: dict[int, int] = {}

    def __len__(self) -> int:
        return len(self._keys) + len(self._recent)

    def first_row(self, key: int) -> int | None:
        """The row that first used ``key``, or None when it is new."""
        row = self._recent.get(key)
        if row is not None:
            return row
        # the array's own method: half the cost of np.searchsorted's dispatch
        at = int(self._keys.searchsorted(np.uint64(key)))
        if at < len(self._keys) and int(self._keys[at]) == key:
            return int(self._rows[at])
        return None

    def add(self, key: int, row: int) -> None:
        """Record a key known to be new (``first_row`` said None)."""
        self._recent[key] = row
        if len(self._recent) >= self.merge_every:
            self._merge()

    def occurrence(self, key: int, row: int) -> int:
        """1 the first time a key is met, then 2, 3, ... (recording it)."""
        if self.first_row(key) is None:
            self.add(key, row)
            return 1
        n = self._repeats.get(key, 1) + 1
        self._repeats[key] = n
        return n

    def _merge(self) -> None:
        keys = np.fromiter(self._recent.keys(), dtype=np.uint64, count=len(self._recent))
        rows = np.fromiter(self._recent.values(), dtype=np.int64, count=len(self._recent))
        order = np.argsort(keys)
        keys, rows = keys[order], rows[order]
        # both sorted: one linear insert, not a sort of everything met so far
        at = np.searchsorted(self._keys, keys)
        self._keys, self._rows = np.insert(self._keys, at, keys), np.insert(self._rows, at, rows)
        self._recent = {}
