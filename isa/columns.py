"""Compact, read-only columns of a unit table, with no Python object per unit.

``StrColumn``: strings (row ids) in one Arrow string array. ``CodeColumn``: a few
distinct values (sides, item labels) as one int8 code each. Both are ``Sequence``s:
``col[i]``, ``len(col)``, iteration, slicing and ``==`` (against any sequence) work as
they did on the lists they replace; ``.arrow`` / ``.codes`` are the arrays themselves.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import Any, overload

import numpy as np
import pyarrow as pa

_BLOCK = 1 << 16  # iteration converts this many strings at a time


def _equal(a: Sequence[Any], b: object) -> bool:
    if not isinstance(b, Sequence) or isinstance(b, str | bytes) or len(a) != len(b):
        return False
    return all(x == y for x, y in zip(a, b, strict=True))


def concat_strings(chunks: list[pa.Array]) -> pa.Array:
    """One string array from ``chunks`` (``large_string`` when they hold 2 GiB or more)."""
    if not chunks:
        return pa.array([], pa.string())
    if sum(c.nbytes for c in chunks) >= 2**31 - 1:
        chunks = [c.cast(pa.large_string()) for c in chunks]
    return pa.concat_arrays(chunks)


class StrColumn(Sequence[str]):
    """A read-only sequence of ``str`` over an Arrow string array (no ``str`` per row)."""

    __slots__ = ("arrow",)

    def __init__(self, values: pa.Array | pa.ChunkedArray | Iterable[str]) -> None:
        if isinstance(values, StrColumn):
            values = values.arrow
        elif isinstance(values, pa.ChunkedArray):
            values = concat_strings(values.chunks) if values.num_chunks != 1 else \
                values.chunk(0)
        elif not isinstance(values, pa.Array):
            values = pa.array(list(values), pa.string())
        self.arrow: pa.Array = values

    def __len__(self) -> int:
        return len(self.arrow)

    @overload
    def __getitem__(self, i: int) -> str: ...

    @overload
    def __getitem__(self, i: slice) -> StrColumn: ...

    def __getitem__(self, i: int | slice) -> str | StrColumn:
        if isinstance(i, slice):
            if i.step not in (None, 1):
                return StrColumn(self.arrow.take(pa.array(range(len(self))[i], pa.int64())))
            return StrColumn(self.arrow[i])
        return self.arrow[i].as_py()

    def __iter__(self) -> Iterator[str]:
        for a in range(0, len(self.arrow), _BLOCK):
            yield from self.arrow.slice(a, _BLOCK).to_pylist()

    def take(self, indices: np.ndarray) -> StrColumn:
        """The rows at ``indices``, as a column."""
        return StrColumn(self.arrow.take(pa.array(np.asarray(indices, dtype=np.int64))))

    def __eq__(self, other: object) -> bool:
        if isinstance(other, StrColumn):
            return self.arrow.equals(other.arrow)
        return _equal(self, other)

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"StrColumn({len(self)} strings)"


class CodeColumn(Sequence[Any]):
    """A read-only sequence over ``values``, one int8 code per row (``values[code]``)."""

    __slots__ = ("codes", "values")

    def __init__(self, codes: np.ndarray, values: tuple[Any, ...]) -> None:
        self.codes = np.asarray(codes, dtype=np.int8)
        self.values = values

    @classmethod
    def of(cls, items: Iterable[Any], values: tuple[Any, ...]) -> CodeColumn:
        """``items`` (values, or a ``CodeColumn`` over the same values) as codes."""
        if isinstance(items, CodeColumn) and items.values == values:
            return items
        code = {v: i for i, v in enumerate(values)}
        seq = items if isinstance(items, Sequence) else list(items)
        return cls(np.fromiter(map(code.__getitem__, seq), dtype=np.int8, count=len(seq)),
                   values)

    def __len__(self) -> int:
        return len(self.codes)

    @overload
    def __getitem__(self, i: int) -> Any: ...

    @overload
    def __getitem__(self, i: slice) -> CodeColumn: ...

    def __getitem__(self, i: int | slice) -> Any:
        if isinstance(i, slice):
            return CodeColumn(self.codes[i], self.values)
        return self.values[self.codes[i]]

    def __iter__(self) -> Iterator[Any]:
        return map(self.values.__getitem__, self.codes.tolist())

    def __array__(self, dtype: Any = None, copy: bool | None = None) -> np.ndarray:
        out = np.array(self.values, dtype=object if None in self.values else None)
        return out[self.codes] if dtype is None else out[self.codes].astype(dtype)

    def strings(self, none: str = "") -> pa.Array:
        """The values as an Arrow string array (``none`` for ``None``)."""
        names = pa.array([none if v is None else v for v in self.values], pa.string())
        return names.take(pa.array(self.codes))

    def __eq__(self, other: object) -> bool:
        if isinstance(other, CodeColumn) and other.values == self.values:
            return bool(np.array_equal(self.codes, other.codes))
        return _equal(self, other)

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"CodeColumn({len(self)} of {self.values})"
