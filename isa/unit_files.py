"""A unit table (without its texts) as one Arrow IPC file: how the map/reduce select job's
reading task hands the units to its reduce step, so that the reduce never parses the
source again (at 10M pairs a pass costs minutes), only streams it once to write the
subset.

One row per unit: row_id, side, source_row, every numeric meta column, and the unit's
items as lists (their 16-byte text keys and label codes). Items follow units in
canonical order, so the list offsets are the groups. The level, template and the
reading pass's report (its counts) travel in the schema's metadata.

Both ways the columns go as arrays, with no Python object per unit; read from a path,
the file is memory-mapped and the table's columns are views of it (pages the kernel can
reclaim, not the process's own memory).
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import BinaryIO

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from .columns import CodeColumn, StrColumn
from .ingest.dataset import IngestReport
from .pipeline import ITEM_LABELS, SIDES, UnitTable

_SIDE_NAMES = pa.array([s or "" for s in SIDES], pa.string())  # a whole pair: ""


def _array(column: pa.ChunkedArray) -> pa.Array:
    """A column as one array: its one chunk, not a copy (the writer writes one)."""
    return column.chunk(0) if column.num_chunks == 1 else column.combine_chunks()


def _numpy(column: pa.ChunkedArray) -> np.ndarray:
    return _array(column).to_numpy()


def write_unit_file(table: UnitTable, report: IngestReport, out: BinaryIO) -> None:
    """Write ``table`` (its texts are not kept: ``text_keys`` must be set) to ``out``."""
    if table.text_keys is None:
        raise ValueError("a unit file holds text keys: read the units with them")
    offsets = pa.array(np.concatenate([[0], np.cumsum(np.bincount(
        table.groups, minlength=len(table)))]).astype(np.int32))
    keys = pa.FixedSizeBinaryArray.from_buffers(
        pa.binary(16), table.n_items, [None, pa.py_buffer(np.ascontiguousarray(
            table.text_keys, dtype=np.uint8))])
    columns = {
        "row_id": StrColumn(table.row_ids).arrow,
        "side": CodeColumn(table.side_codes, SIDES).strings(""),
        "source_row": pa.array(table.source_rows),
        "item_keys": pa.ListArray.from_arrays(offsets, keys),
        "item_labels": pa.ListArray.from_arrays(offsets, pa.array(table.label_codes)),
        **{f"meta.{k}": pa.array(v) for k, v in table.meta.items()},
    }
    meta = {"level": table.level, "template": table.template, "report": json.dumps({
        "file": report.file, "file_format": report.file_format, "shape": report.shape,
        "rows_read": report.rows_read, "rows_valid": report.rows_valid,
        "rows_skipped": report.rows_skipped, "examples": report.examples,
        "skipped_by_code": dict(report.skipped_by_code)})}
    arrow = pa.table(columns).replace_schema_metadata(meta)
    with pa.ipc.new_file(out, arrow.schema) as writer:
        writer.write_table(arrow)


def read_unit_file(source: BinaryIO | str | Path) -> tuple[UnitTable, IngestReport]:
    """The table and report ``write_unit_file`` wrote (texts and prompt keys empty).
    From a path the file is memory-mapped: the columns are read-only views of it."""
    if isinstance(source, str | Path):
        source = pa.memory_map(str(source))
    arrow = pa.ipc.open_file(source).read_all()
    meta = {k.decode(): v.decode() for k, v in (arrow.schema.metadata or {}).items()}
    keys = _array(arrow.column("item_keys"))
    counts = np.diff(keys.offsets.to_numpy())
    n = arrow.num_rows
    flat = keys.flatten()
    text_keys = np.frombuffer(flat.buffers()[1], dtype=np.uint8)[
        flat.offset * 16:(flat.offset + len(flat)) * 16].reshape(-1, 16)
    labels = _array(arrow.column("item_labels")).flatten().to_numpy()
    sides = pc.index_in(arrow.column("side"), value_set=_SIDE_NAMES)
    table = UnitTable(
        level=meta["level"], template=meta["template"],
        row_ids=StrColumn(arrow.column("row_id")),
        sides=CodeColumn(_numpy(sides).astype(np.int8), SIDES),
        source_rows=_numpy(arrow.column("source_row")),
        texts=[], text_labels=CodeColumn(labels, ITEM_LABELS),
        groups=np.repeat(np.arange(n, dtype=np.int64), counts),
        meta={name[5:]: _numpy(arrow.column(name)) for name in arrow.column_names
              if name.startswith("meta.")},
        text_keys=text_keys)
    r = json.loads(meta["report"])
    report = IngestReport(r["file"], r["file_format"], r["shape"], r["rows_read"],
                          r["rows_valid"], r["rows_skipped"], Counter(r["skipped_by_code"]),
                          examples=r.get("examples", r["rows_valid"]))
    return table, report
