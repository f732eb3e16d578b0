"""The ids one pass over a file has met, in 16 bytes a slot instead of a dict's ~120 an id.

A reader must know, row by row, whether an id was used before (the ``duplicate_id``
error) and how often a row's content came before (the numbering of exact duplicate rows).
A ``dict`` of the id strings took 118 B a row, and more than that stayed: its ten million
small strings live in the interpreter's own allocator, whose memory goes back to the
system only when a whole arena is free, so after a 10M-row pass ~1.1 GB was still held by
the process while it sorted and wrote the table (``bench/unit_memory.py``).

Here an id is its 64-bit ``hash()`` in an open-addressing table of two ``array``
buffers (the hash, and the first row or the count), grown by doubling at 70% full:
16 B a slot, ~23-46 B an id, and one block each that goes back to the system when the
pass ends. A lookup is a few indexings of the arrays, no Python object kept per id.

Two different ids share a 64-bit hash with a probability of ~3e-6 in a 10-million-row
file (the content-addressed row ids are 64 bits of SHA-256 already): the later row would
be taken for a duplicate of the earlier.
"""

from __future__ import annotations

from array import array

import numpy as np

_EMPTY = 0
_MAX_LOAD = 0.7


class SeenIds:
    """Ids met so far, each with a number: the row that first used it (``first_row``)
    or how often it has been met (``occurrence``) — one use per table."""

    def __init__(self, capacity: int = 1 << 16) -> None:
        size = 1 << max(4, (capacity - 1).bit_length())
        self._hashes = array("q", bytes(8 * size))
        self._values = array("q", bytes(8 * size))
        self._mask = size - 1
        self._n = 0

    def __len__(self) -> int:
        return self._n

    @property
    def nbytes(self) -> int:
        return (len(self._hashes) + len(self._values)) * 8

    def first_row(self, row_id: str, row: int) -> int | None:
        """The row that first used ``row_id``; None when it is new (``row`` is then
        recorded as its first)."""
        h = hash(row_id) or 1  # 0 marks an empty slot
        hashes, mask = self._hashes, self._mask
        slot = h & mask
        while (found := hashes[slot]) != h:  # linear probing, inline: a row's hot path
            if found == _EMPTY:
                self._put(slot, h, row)
                return None
            slot = (slot + 1) & mask
        return self._values[slot]

    def occurrence(self, row_id: str) -> int:
        """1 the first time ``row_id`` is met, then 2, 3, ..."""
        h = hash(row_id) or 1
        hashes, mask = self._hashes, self._mask
        slot = h & mask
        while (found := hashes[slot]) != h:
            if found == _EMPTY:
                self._put(slot, h, 1)
                return 1
            slot = (slot + 1) & mask
        self._values[slot] += 1
        return self._values[slot]

    def _put(self, slot: int, h: int, value: int) -> None:
        self._hashes[slot], self._values[slot] = h, value
        self._n += 1
        if self._n > _MAX_LOAD * len(self._hashes):
            self._grow()

    def _grow(self) -> None:
        """Twice the slots, the ids re-placed at once: in order of their new home slot,
        each goes to its home or just past the one before (linear probing's layout,
        whatever the order they came in); those pushed past the end take the first free
        slots from the start."""
        hashes = np.frombuffer(self._hashes, dtype=np.int64)
        used = hashes != _EMPTY
        hashes, values = hashes[used], np.frombuffer(self._values, dtype=np.int64)[used]
        size = 2 * len(self._hashes)
        home = hashes & (size - 1)
        order = np.argsort(home, kind="stable")
        hashes, values, home = hashes[order], values[order], home[order]
        ranks = np.arange(len(home))
        place = np.maximum.accumulate(home - ranks) + ranks
        del order, home, ranks
        new_hashes, new_values = np.zeros(size, dtype=np.int64), np.zeros(size, dtype=np.int64)
        inside = place < size
        new_hashes[place[inside]], new_values[place[inside]] = hashes[inside], values[inside]
        slot = 0
        for h, value in zip(hashes[~inside].tolist(), values[~inside].tolist(), strict=True):
            while new_hashes[slot] != _EMPTY:
                slot += 1
            new_hashes[slot], new_values[slot] = h, value
        self._hashes = array("q", new_hashes.tobytes())
        self._values = array("q", new_values.tobytes())
        self._mask = size - 1
