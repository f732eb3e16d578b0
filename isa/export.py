"""Stage 4: write the subset (in the input's own shape or an export shape) and the
per-unit scores. Files are written to a temporary name beside the target and renamed,
so a reader never sees half a file.
"""

from __future__ import annotations

import gzip
import io
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from .columns import CodeColumn, StrColumn
from .errors import ConfigError
from .files import atomic_output
from .ingest.dataset import PreferenceFile
from .ingest.records import Example, Message, Text
from .ingest.shapes import HH_HUMAN, hh_to_messages
from .pipeline import (
    ITEM_LABEL_CODE,
    ITEM_LABELS,
    SIDES,
    SelectionResult,
    default_export_shapes,
)

EXPORT_SHAPES: tuple[str, ...] = ("input", "trl", "kto", "openai")
_OUT_FORMATS = {".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "json", ".parquet": "parquet",
                ".csv": "csv"}


def output_format(path: Path) -> tuple[str, bool]:
    """``(format, gzip)`` from an output file name."""
    suffixes = [s.lower() for s in path.suffixes]
    gz = bool(suffixes) and suffixes[-1] == ".gz"
    if gz:
        suffixes.pop()
    fmt = _OUT_FORMATS.get(suffixes[-1] if suffixes else "")
    if fmt is None:
        raise ConfigError(f"cannot tell the output format of {path.name!r}: use .jsonl, .json, "
                          ".parquet or .csv (optionally .gz)", code="unknown_output_format")
    if fmt == "parquet" and gz:
        raise ConfigError("Parquet is compressed internally: drop the .gz",
                          code="unknown_output_format")
    return fmt, gz


def write_records(records: Iterable[dict[str, Any]], path: str | Path) -> int:
    """Write dicts to ``path`` (format from its name) atomically; returns the count."""
    path = Path(path)
    fmt, gz = output_format(path)
    with atomic_output(path) as raw:
        if fmt == "parquet":
            return _write_parquet(records, raw)
        stream: Any = gzip.GzipFile(fileobj=raw, mode="wb") if gz else raw
        n = {"jsonl": _write_jsonl, "json": _write_json, "csv": _write_csv}[fmt](records, stream)
        if gz:
            stream.close()
        return n


def _dumps(obj: Any) -> bytes:
    return orjson.dumps(obj, default=str, option=orjson.OPT_SERIALIZE_NUMPY)


def _write_jsonl(records: Iterable[dict[str, Any]], out: Any) -> int:
    n = 0
    for r in records:
        out.write(_dumps(r) + b"\n")
        n += 1
    return n


def _write_json(records: Iterable[dict[str, Any]], out: Any) -> int:
    n = 0
    out.write(b"[")
    for r in records:
        out.write((b",\n" if n else b"\n") + _dumps(r))
        n += 1
    out.write(b"\n]\n")
    return n


def _write_csv(records: Iterable[dict[str, Any]], out: Any) -> int:
    import csv

    rows = list(records)
    header: list[str] = []
    for r in rows:
        header.extend(k for k in r if k not in header)
    text = io.TextIOWrapper(out, encoding="utf-8", newline="", write_through=True)
    w = csv.writer(text)
    w.writerow(header)
    for r in rows:
        w.writerow(["" if r.get(k) is None else
                    (_csv_safe(v) if isinstance(v := r.get(k), str) else _dumps(v).decode())
                    for k in header])
    text.detach()
    return len(rows)


#: what makes a spreadsheet read a cell as a formula: these first characters (and their
#: full-width forms, which some spreadsheets fold to them), also after leading spaces,
#: which spreadsheets skip (" =1+1" runs too)
_FORMULA_START = frozenset("=+-@\uff1d\uff0b\uff0d\uff20")


def _csv_safe(text: str) -> str:
    """A text cell a spreadsheet will not run as a formula (OWASP CSV injection)."""
    if text[:1] in ("\t", "\r") or text.lstrip(" \t\r\n\u00a0\u3000")[:1] in _FORMULA_START:
        return "'" + text
    return text


def _write_parquet(records: Iterable[dict[str, Any]], out: Any) -> int:
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = list(records)
    table = pa.Table.from_pylist(rows) if rows else pa.table({})
    pq.write_table(table, out)
    return len(rows)


# --- subset export ---------------------------------------------------------------------


def _as_messages(text: Text, role: str) -> list[Message]:
    if isinstance(text, list):
        return text
    if HH_HUMAN in text:  # an HH dialogue: its turns become messages
        return hh_to_messages(text)
    return [{"role": role, "content": text.strip()}]


#: names an export writes itself or that TRL's data utilities read (``messages`` beside a
#: prompt makes TRL's ``apply_chat_template`` refuse the row): a source column of one of
#: these names is kept as ``source_<name>``, never written over the canonical field
RESERVED_COLUMNS = frozenset({"row_id", "item", "prompt", "chosen", "rejected", "completion",
                              "label", "messages"})
EXTRA_PREFIX = "source_"


def _with_extra(record: dict[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    """``record`` followed by the source's other columns; the canonical fields win."""
    out = dict(record)
    for name, value in extra.items():
        key = name
        while key in RESERVED_COLUMNS or key in out:
            key = EXTRA_PREFIX + key
        out[key] = value
    return out


def export_record(ex: Example, shape: str, side: str | None) -> Iterator[dict[str, Any]]:
    """One source example in an export shape (KTO turns a pair into two items)."""
    if shape == "trl":
        if ex.kind != "pair":
            raise ConfigError("TRL preference export needs paired data; use 'kto'",
                              code="invalid_export")
        yield _with_extra({"row_id": ex.row_id, "prompt": ex.prompt, "chosen": ex.chosen,
                           "rejected": ex.rejected}, ex.extra)
    elif shape == "kto":
        sides = [side] if side else (["chosen", "rejected"] if ex.kind == "pair"
                                     else ["completion"])
        for s in sides:
            label = ex.label if s == "completion" else s == "chosen"
            yield _with_extra({"row_id": ex.row_id, "item": s, "prompt": ex.prompt,
                               "completion": getattr(ex, s), "label": label}, ex.extra)
    elif shape == "openai":
        if ex.kind != "pair":
            raise ConfigError("OpenAI preference export needs paired data",
                              code="invalid_export")
        # Only the keys the OpenAI format defines: its validator rejects others.
        yield {"input": {"messages": _as_messages(ex.prompt, "user")},
               "preferred_output": _as_messages(ex.chosen or "", "assistant"),
               "non_preferred_output": _as_messages(ex.rejected or "", "assistant")}
    else:
        raise ConfigError(f"unknown export shape {shape!r}; expected one of {EXPORT_SHAPES}",
                          code="invalid_export")


def _check_shape(result: SelectionResult, shape: str) -> None:
    if shape not in EXPORT_SHAPES:
        raise ConfigError(f"unknown export shape {shape!r}; expected one of {EXPORT_SHAPES}",
                          code="invalid_export")
    available = default_export_shapes(result.units)
    if shape not in available:
        units = ("single items picked from pairs" if available == ("kto",)
                 else f"{result.units.level}s")
        raise ConfigError(f"a selection of {units} cannot be exported as {shape!r}; "
                          f"export as {' or '.join(repr(a) for a in available)}",
                          code="invalid_export")


def _selected_examples(source: PreferenceFile, result: SelectionResult) -> Iterator[Example]:
    """The examples holding a selected unit, in file order (one streaming pass)."""
    rows = {r for r, _ in result.selected_keys()}
    return (ex for ex in source.iter_examples() if ex.row_id in rows)


def _shape_records(examples: Iterable[Example], result: SelectionResult,
                   shape: str) -> Iterator[dict[str, Any]]:
    keys = result.selected_keys()
    item_level = result.units.level == "item"
    last_row = -1
    for ex in examples:
        if shape == "input":
            if ex.row != last_row:  # a row of ranked answers is several pairs: once
                yield ex.raw
            last_row = ex.row
        elif item_level:
            for side in ("chosen", "rejected", "completion"):
                if (ex.row_id, side) in keys:
                    yield from export_record(ex, shape, side)
        else:
            yield from export_record(ex, shape, None)


def iter_subset(source: PreferenceFile, result: SelectionResult,
                shape: str = "input") -> Iterator[dict[str, Any]]:
    """The selected rows, in file order, re-read from ``source`` (a second streaming pass)."""
    _check_shape(result, shape)
    return _shape_records(_selected_examples(source, result), result, shape)


def write_subset(source: PreferenceFile, result: SelectionResult, path: str | Path, *,
                 shape: str = "input") -> int:
    """Write the subset; returns the number of records written."""
    return write_records(iter_subset(source, result, shape), path)


def write_subsets(source: PreferenceFile, result: SelectionResult,
                  outputs: Mapping[str | Path, str]) -> dict[Path, int]:
    """Write the subset in several shapes (``{path: shape}``) from one pass over the
    source; the selected rows are held in memory meanwhile (the subset, not the file)."""
    for shape in outputs.values():
        _check_shape(result, shape)
    selected = list(_selected_examples(source, result))
    return {Path(path): write_records(_shape_records(selected, result, shape), path)
            for path, shape in outputs.items()}


_SCORE_BLOCK = 1 << 20  # units a scores file is written a block at a time


def score_columns(result: SelectionResult) -> dict[str, Any]:
    """Per-unit columns: row_id, [item], source_row, score, rank (1 = kept first),
    selected, and the method's diagnostics (per item suffixed by its label)."""
    return next(score_blocks(result, max(len(result.units), 1)))


def score_blocks(result: SelectionResult, size: int = _SCORE_BLOCK
                 ) -> Iterator[dict[str, Any]]:
    """``score_columns`` a block of ``size`` units at a time (at least one block): what
    a scores file is written from, holding one block's columns at once. Row ids and
    items are ``StrColumn``s, the rest numpy arrays."""
    units, method = result.units, result.method
    n = len(units)
    rank = np.empty(n, dtype=np.int64)
    rank[method.ranking_] = np.arange(1, n + 1)
    groups = units.groups
    # label codes, 1 byte an item (a numpy array of the label strings took 36)
    codes = units.label_codes
    per_unit = np.bincount(groups, minlength=n)
    single = bool((per_unit == 1).all())
    ordered = bool((groups[1:] >= groups[:-1]).all())  # items follow their units
    item_edges = np.concatenate([[0], np.cumsum(per_unit)])
    del per_unit
    present, first = np.unique(codes, return_index=True)
    labels = [ITEM_LABELS[c] for c in present[np.argsort(first)]]  # order of appearance
    size = size if ordered else max(n, 1)
    for a in range(0, max(n, 1), size):
        b = min(a + size, n)
        i, j = (int(item_edges[a]), int(item_edges[b])) if ordered else (0, len(groups))
        cols: dict[str, Any] = {"row_id": StrColumn(units.row_ids)[a:b]}
        if units.level == "item":
            cols["item"] = StrColumn(CodeColumn(units.side_codes[a:b], SIDES).strings(""))
        cols.update({"source_row": units.source_rows[a:b], "score": method.scores_[a:b],
                     "rank": rank[a:b], "selected": result.selected[a:b]})
        for name, values in method.details_.items():
            cols[name] = values[a:b]
        g, c = groups[i:j] - a, codes[i:j]
        for name, values in method.item_details_.items():
            v = values[i:j]
            if single:
                out = np.empty(b - a, dtype=values.dtype)
                out[g] = v
                cols[name] = out
                continue
            for label in labels:  # columns in order of appearance
                mask = c == ITEM_LABEL_CODE[label]
                out = np.full(b - a, np.nan) if values.dtype.kind == "f" else \
                    np.full(b - a, -1)
                out[g[mask]] = v[mask]
                cols[f"{name}_{label}"] = out
        yield cols


def write_scores(result: SelectionResult, path: str | Path) -> int:
    """Write per-unit scores (Parquet, CSV or JSON Lines by the file name), a block of
    units at a time."""
    n = len(result.units)

    def rows() -> Iterator[dict[str, Any]]:
        for cols in score_blocks(result, _SCORE_BLOCK):
            names = list(cols)
            lists = [v.tolist() if isinstance(v, np.ndarray) else list(v)
                     for v in cols.values()]
            for values in zip(*lists, strict=True):
                yield dict(zip(names, values, strict=True))

    if output_format(Path(path))[0] == "parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        # columnar straight from the arrays, no per-row dicts; one row group a block
        with atomic_output(Path(path)) as fh:
            writer = None
            for cols in score_blocks(result, _SCORE_BLOCK):
                block = pa.table({k: v.arrow if isinstance(v, StrColumn) else v
                                  for k, v in cols.items()})
                writer = writer or pq.ParquetWriter(fh, block.schema)
                writer.write_table(block)
            assert writer is not None
            writer.close()
        return n
    return write_records(rows(), path)
