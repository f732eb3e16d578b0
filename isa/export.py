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

from .errors import ConfigError
from .files import atomic_output
from .ingest.dataset import PreferenceFile
from .ingest.records import Example, Message, Text
from .ingest.shapes import HH_HUMAN, hh_to_messages
from .pipeline import (
    ITEM_LABEL_CODE,
    SelectionResult,
    default_export_shapes,
    item_label_codes,
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


def score_columns(result: SelectionResult) -> dict[str, np.ndarray | list]:
    """Per-unit columns: row_id, [item], source_row, score, rank (1 = kept first),
    selected, and the method's diagnostics (per item suffixed by its label)."""
    units = result.units
    n = len(units)
    rank = np.empty(n, dtype=np.int64)
    rank[result.method.ranking_] = np.arange(1, n + 1)
    cols: dict[str, np.ndarray | list] = {"row_id": units.row_ids}
    if units.level == "item":
        cols["item"] = [s or "" for s in units.sides]
    cols.update({"source_row": units.source_rows, "score": result.method.scores_,
                 "rank": rank, "selected": result.selected})
    for name, values in result.method.details_.items():
        cols[name] = values
    if result.method.item_details_:
        # label codes, 1 byte an item (a numpy array of the label strings took 36)
        codes = item_label_codes(units.text_labels)
        per_unit = np.bincount(units.groups, minlength=n)
        single = bool((per_unit == 1).all())
        for name, values in result.method.item_details_.items():
            if single:
                out = np.empty(n, dtype=values.dtype)
                out[units.groups] = values
                cols[name] = out
                continue
            for label in dict.fromkeys(units.text_labels):  # columns in order of appearance
                mask = codes == ITEM_LABEL_CODE[label]
                out = np.full(n, np.nan) if values.dtype.kind == "f" else np.full(n, -1)
                out[units.groups[mask]] = values[mask]
                cols[f"{name}_{label}"] = out
    return cols


def write_scores(result: SelectionResult, path: str | Path) -> int:
    """Write per-unit scores (Parquet, CSV or JSON Lines by the file name)."""
    cols = score_columns(result)
    names = list(cols)
    n = len(result.units)

    def rows() -> Iterator[dict[str, Any]]:
        for i in range(n):
            yield {k: (v[i].item() if isinstance(v, np.ndarray) else v[i]) for k, v in
                   ((k, cols[k]) for k in names)}

    if output_format(Path(path))[0] == "parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        # columnar straight from the arrays, no per-row dicts
        with atomic_output(Path(path)) as fh:
            pq.write_table(pa.table({k: cols[k] for k in names}), fh)
        return n
    return write_records(rows(), path)
