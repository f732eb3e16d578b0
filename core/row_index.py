"""A data set's row index: its normalised rows in one Parquet file of small row groups,
written once while validation reads the file, so that a page of rows at any offset, or the
rows a subset names, reads a few row groups instead of the source file from its start (a
page at row 42,000 of the source took 2.45 s; here it is one row group).

Texts are stored as read: a string as itself, a message list as its JSON (``conversational``
says which), so a view can show the turns. ``*_chars`` hold each text's rendered length
(for sorting and histograms); ``extra`` is the row's other columns as JSON.

The same pass collects the data set's statistics (:class:`StatsCollector`): its columns,
and histograms of text lengths and of numeric columns (margins, ratings), kept on the data
set's record and drawn by the dashboard."""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from isa.ingest.records import Example, render_text

if TYPE_CHECKING:
    import pyarrow as pa

    from core.artifacts import ArtifactStore

FILENAME = "rows.parquet"
#: rows per row group: a page reads one or two of them, and a page of a subset (rows
#: scattered over the file) reads at most one group of this size per row shown
ROW_GROUP = 128
TEXTS = ("prompt", "chosen", "rejected", "completion")
#: numeric columns given a histogram (the first ones met), and values kept per column
MAX_NUMERIC_COLUMNS = 12
MAX_NUMERIC_VALUES = 200_000
HISTOGRAM_BINS = 20


def key(dataset_id: str) -> str:
    from core.artifacts import Keys

    return f"{Keys.dataset(dataset_id)}/{FILENAME}"


def _schema() -> pa.Schema:
    import pyarrow as pa

    return pa.schema(
        [("row", pa.int64()), ("row_id", pa.string()), ("line", pa.int64()),
         ("kind", pa.string()), ("conversational", pa.bool_()), ("label", pa.bool_())]
        + [(t, pa.string()) for t in TEXTS] + [(f"{t}_chars", pa.int64()) for t in TEXTS]
        + [("extra", pa.string())])


def _stored(text: Any) -> str | None:
    if text is None:
        return None
    return text if isinstance(text, str) else json.dumps(text, ensure_ascii=False)


def loaded(text: str | None, conversational: bool) -> Any:
    """A stored text as it was read (a message list back from its JSON)."""
    if text is None or not conversational:
        return text
    try:
        return json.loads(text)
    except ValueError:  # a plain string in a conversational row (a string prompt)
        return text


class RowIndexWriter:
    """Buffers examples and writes them a row group at a time (memory stays one group)."""

    def __init__(self, fh: Any) -> None:
        import pyarrow.parquet as pq

        self._schema = _schema()
        self._writer = pq.ParquetWriter(fh, self._schema, compression="zstd")
        self._rows: list[dict[str, Any]] = []
        self.rows = 0

    def add(self, ex: Example) -> None:
        row: dict[str, Any] = {"row": ex.row, "row_id": ex.row_id, "line": ex.line,
                               "kind": str(ex.kind), "conversational": ex.conversational,
                               "label": ex.label,
                               "extra": json.dumps(ex.extra, ensure_ascii=False, default=str)
                               if ex.extra else None}
        for t in TEXTS:
            value = getattr(ex, t)
            row[t] = _stored(value)
            row[f"{t}_chars"] = None if value is None else len(render_text(value))
        self._rows.append(row)
        if len(self._rows) == ROW_GROUP:
            self._flush()

    def _flush(self) -> None:
        import pyarrow as pa

        if self._rows:
            self._writer.write_table(pa.Table.from_pylist(self._rows, schema=self._schema),
                                     row_group_size=ROW_GROUP)
            self.rows += len(self._rows)
            self._rows = []

    def close(self) -> None:
        self._flush()
        self._writer.close()


class RowIndex:
    """Reads a written index: pages by position, rows by id, whole columns."""

    def __init__(self, path: Path) -> None:
        import pyarrow.parquet as pq

        self._file = pq.ParquetFile(path)
        self.rows = self._file.metadata.num_rows
        #: row groups read so far (what a test checks a page costs)
        self.groups_read = 0

    @classmethod
    def open(cls, artifacts: ArtifactStore, dataset_id: str) -> RowIndex | None:
        """The data set's index, or None (a data set validated before indexes existed)."""
        k = key(dataset_id)
        return cls(artifacts.local_path(k)) if artifacts.exists(k) else None

    @classmethod
    def if_ready(cls, artifacts: ArtifactStore, ds: dict[str, Any] | None) -> RowIndex | None:
        """The index of data set record ``ds`` if it is ready and has one, else None (no
        record, not ready yet or invalid, or validated before indexes existed)."""
        return cls.open(artifacts, ds["id"]) if ds and ds["status"] == "ready" else None

    def _groups(self, groups: Iterable[int], columns: Sequence[str] | None = None) -> pa.Table:
        import pyarrow as pa

        groups = sorted(set(groups))
        self.groups_read += len(groups)
        if not groups:
            return _schema().empty_table() if columns is None else pa.table(
                {c: pa.array([], type=_schema().field(c).type) for c in columns})
        return self._file.read_row_groups(groups, columns=list(columns) if columns else None)

    def page(self, offset: int, limit: int) -> list[dict[str, Any]]:
        """Rows ``offset`` to ``offset + limit`` (in file order), reading only their groups."""
        if offset >= self.rows or limit <= 0:
            return []
        first, last = offset // ROW_GROUP, min(offset + limit, self.rows) - 1
        table = self._groups(range(first, last // ROW_GROUP + 1))
        start = offset - first * ROW_GROUP
        return _records(table.slice(start, limit))

    def column(self, *names: str) -> pa.Table:
        """Whole columns (every group), e.g. ``row_id`` and the lengths for sorting."""
        return self._groups(range(self._file.num_row_groups), names)

    def by_ids(self, row_ids: Sequence[str], ids: Any = None) -> dict[str, dict[str, Any]]:
        """The rows with these ids, reading only the groups that hold them. ``ids``: the
        ``row_id`` column, when the caller has read it already."""
        import pyarrow as pa
        import pyarrow.compute as pc

        if not row_ids:
            return {}
        if ids is None:
            ids = self.column("row_id")["row_id"]
        positions = pc.index_in(pa.array(list(row_ids), pa.string()), value_set=ids)
        found = sorted({p for p in positions.to_pylist() if p is not None})
        groups = sorted({p // ROW_GROUP for p in found})
        table = self._groups(groups)
        starts = {g: i * ROW_GROUP for i, g in enumerate(groups)}  # each group is full
        # a group's rows sit at (group position in the read) + offset inside the group
        take = [starts[p // ROW_GROUP] + p % ROW_GROUP for p in found]
        return {r["row_id"]: r for r in _records(table.take(take))}


def _records(table: pa.Table) -> list[dict[str, Any]]:
    out = []
    for r in table.to_pylist():
        conv = bool(r["conversational"])
        for t in TEXTS:
            r[t] = loaded(r[t], conv)
        r["extra"] = json.loads(r["extra"]) if r["extra"] else {}
        out.append(r)
    return out


def _log2_edges(top: int) -> list[int]:
    """0, 1, 2, 4, … up to the first power of two above ``top``: lengths span decades."""
    edges = [0, 1]
    while edges[-1] <= top:
        edges.append(edges[-1] * 2)
    return edges


def histogram(values: np.ndarray, *, log2: bool = False,
              bins: int = HISTOGRAM_BINS) -> dict[str, Any] | None:
    """``{"edges": [...], "counts": [...]}`` (``len(edges) == len(counts) + 1``), with the
    count, mean and extremes; None for no finite values."""
    values = values[np.isfinite(values)]
    if values.size == 0:
        return None
    if log2:
        edges = np.asarray(_log2_edges(int(values.max())), dtype=float)
    else:
        lo, hi = float(values.min()), float(values.max())
        edges = np.linspace(lo, hi if hi > lo else lo + 1.0, bins + 1)
    counts, _ = np.histogram(values, bins=edges)
    return {"edges": [float(e) for e in edges], "counts": [int(c) for c in counts],
            "count": int(values.size), "mean": float(values.mean()),
            "min": float(values.min()), "max": float(values.max())}


class StatsCollector:
    """A data set's columns and histograms, collected in the validation pass."""

    def __init__(self) -> None:
        self.columns: dict[str, None] = {}
        self._lengths: dict[str, list[int]] = {t: [] for t in TEXTS}
        self._numeric: dict[str, list[float]] = {}
        self._not_numeric: set[str] = set()

    def add(self, ex: Example) -> None:
        for t in TEXTS:
            value = getattr(ex, t)
            if value is not None:
                self.columns.setdefault(t, None)
                self._lengths[t].append(len(render_text(value)))
        if ex.label is not None:
            self.columns.setdefault("label", None)
        for k, v in ex.extra.items():
            self.columns.setdefault(k, None)
            self._number(k, v)

    def _number(self, k: str, v: Any) -> None:
        if k in self._not_numeric:
            return
        if v is None:
            return
        if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
            self._not_numeric.add(k)
            self._numeric.pop(k, None)
            return
        values = self._numeric.get(k)
        if values is None:
            if len(self._numeric) >= MAX_NUMERIC_COLUMNS:
                return
            values = self._numeric[k] = []
        if len(values) < MAX_NUMERIC_VALUES:
            values.append(float(v))

    def to_dict(self) -> dict[str, Any]:
        lengths = {f"{t}_chars": h for t, v in self._lengths.items()
                   if v and (h := histogram(np.asarray(v, dtype=float), log2=True))}
        numeric = {k: h for k, v in self._numeric.items()
                   if v and (h := histogram(np.asarray(v)))}
        return {"columns": list(self.columns), "lengths": lengths, "numeric": numeric}
