"""``PreferenceFile``: a preference data set on disk, read as a stream of ``Example``s."""

from __future__ import annotations

import hashlib
import time
from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import orjson

from ..errors import ConfigError, IngestError, Location, RowProblem
from .readers import (
    DEFAULT_MAX_DECOMPRESSION_RATIO,
    DEFAULT_MAX_LINE_BYTES,
    FileFormat,
    detect_format,
    iter_raw_records,
)
from .records import Example
from .seen_ids import SeenIds
from .shapes import (
    CANONICAL_FIELDS,
    PAIRINGS,
    SHAPES,
    Pairing,
    ShapeViolation,
    consumed_fields,
    detect_shape,
    parse_examples,
)

OnInvalid = Literal["fail", "skip"]
#: at most this many skipped rows are listed one by one in a report (all are counted)
MAX_LISTED_PROBLEMS = 1000
#: longest text (characters) a row may carry in any field
DEFAULT_MAX_FIELD_CHARS = 1_000_000


@dataclass(slots=True)
class IngestReport:
    """What one pass over the file read, kept and skipped, and why."""

    file: str
    file_format: str | None = None
    shape: str | None = None
    rows_read: int = 0
    rows_valid: int = 0
    rows_skipped: int = 0
    skipped_by_code: Counter[str] = field(default_factory=Counter)
    skipped: list[RowProblem] = field(default_factory=list)
    #: preference pairs (or KTO items) the valid rows hold: more than the rows when a row
    #: of ranked answers becomes several pairs
    examples: int = 0

    def add_problem(self, problem: RowProblem) -> None:
        self.rows_skipped += 1
        self.skipped_by_code[problem.code] += 1
        if len(self.skipped) < MAX_LISTED_PROBLEMS:
            self.skipped.append(problem)

    def to_dict(self) -> dict[str, Any]:
        return {
            "file": self.file,
            "format": self.file_format,
            "shape": self.shape,
            "rows_read": self.rows_read,
            "rows_valid": self.rows_valid,
            "rows_skipped": self.rows_skipped,
            "examples": self.examples,
            "skipped_by_code": dict(self.skipped_by_code),
            "skipped": [p.to_dict() for p in self.skipped],
            "skipped_listed_truncated": self.rows_skipped > len(self.skipped),
        }


class PreferenceFile:
    """A preference data set file, streamed row by row.

    Every iteration re-reads the file, so a second pass (e.g. to write a subset) costs
    no memory. ``report`` describes the latest pass (counting while it runs).

    Args:
        path: the file (JSON Lines, JSON array, Parquet or CSV; gzip allowed).
        file_format: force the container instead of detecting it.
        shape: force one of :data:`SHAPES` instead of detecting it from the first row.
        column_map: source column -> field, in the direction of pandas' and ``datasets``'
            ``rename``, e.g. ``{"question": "prompt", "confidence": "margin"}``; the fields
            are :data:`~isa.ingest.shapes.CANONICAL_FIELDS`.
        id_field: a source column whose value becomes ``row_id`` (must be unique).
        pairing: how a row of N rated answers (shape ``ranked``) becomes pairs:
            ``"best_vs_worst"`` (one pair) or ``"best_vs_each"`` (N - 1 pairs).
        on_invalid: ``"fail"`` raises on the first bad row; ``"skip"`` drops it and
            records it in the report.
        max_rows: raise ``too_many_rows`` beyond this many records.
        max_line_bytes: longest accepted line (JSON Lines), CSV field or JSON-array record.
        max_field_chars: longest accepted text (prompt, answer); a longer one makes its
            row invalid (``field_too_long``).
        max_decompression_ratio: a gzip file that inflates past this many times its own
            size (and past 64 MiB) is refused (``decompression_limit``).
    """

    def __init__(
        self,
        path: str | Path,
        *,
        file_format: FileFormat | None = None,
        shape: str | None = None,
        column_map: Mapping[str, str] | None = None,
        id_field: str | None = None,
        pairing: Pairing = "best_vs_worst",
        on_invalid: OnInvalid = "fail",
        max_rows: int | None = None,
        max_line_bytes: int = DEFAULT_MAX_LINE_BYTES,
        max_field_chars: int = DEFAULT_MAX_FIELD_CHARS,
        max_decompression_ratio: float = DEFAULT_MAX_DECOMPRESSION_RATIO,
    ) -> None:
        if shape is not None and shape not in SHAPES:
            raise ConfigError(f"unknown shape {shape!r}; expected one of {', '.join(SHAPES)}",
                              code="unknown_shape")
        if on_invalid not in ("fail", "skip"):
            raise ConfigError("on_invalid must be 'fail' or 'skip'")
        if pairing not in PAIRINGS:
            raise ConfigError(f"pairing must be one of {', '.join(PAIRINGS)}; got {pairing!r}",
                              code="invalid_pairing")
        column_map = _check_column_map(dict(column_map or {}))
        self.path = Path(path)
        self.file_format = file_format
        self.shape = shape
        self.column_map = column_map
        self.id_field = id_field
        self.pairing = pairing
        self.on_invalid = on_invalid
        self.max_rows = max_rows
        self.max_line_bytes = max_line_bytes
        self.max_field_chars = max_field_chars
        self.max_decompression_ratio = max_decompression_ratio
        #: seconds a pass may read for (None: no limit); past it the pass raises
        #: ``validation_time_exceeded`` at the record it reached, skipped rows counted too
        self.time_budget_s: float | None = None
        self.report = IngestReport(file=str(self.path))

    def __iter__(self) -> Iterator[Example]:
        return self.iter_examples()

    def _check_field_sizes(self, example: Example) -> None:
        """A text above ``max_field_chars`` makes the row invalid: every later stage
        (embedding, scoring, export) costs memory in proportion to its largest text."""
        for name in ("prompt", "chosen", "rejected", "completion"):
            value = getattr(example, name)
            if value is None:
                continue
            size = len(value) if isinstance(value, str) else sum(
                len(str(m.get("content", ""))) for m in value)
            if size > self.max_field_chars:
                raise ShapeViolation("field_too_long", f"{size:,} characters, over the limit "
                                     f"of {self.max_field_chars:,}", name)

    def iter_examples(self) -> Iterator[Example]:
        """Yield every valid row as an ``Example``, applying the ``on_invalid`` policy."""
        fmt = self.file_format or detect_format(self.path)
        report = IngestReport(file=str(self.path), file_format=fmt, shape=self.shape)
        self.report = report  # live: a reader stopped early (a time budget) can say where
        shape = self.shape
        seen_ids = SeenIds()
        budget = self.time_budget_s
        deadline = None if budget is None else time.monotonic() + budget
        for rec in iter_raw_records(self.path, file_format=fmt,
                                    max_line_bytes=self.max_line_bytes,
                                    max_decompression_ratio=self.max_decompression_ratio):
            if deadline is not None and time.monotonic() > deadline:
                raise IngestError(f"reading stopped after {budget:g} s (the limit) with "
                                  f"{report.rows_read:,} rows read",
                                  code="validation_time_exceeded",
                                  location=Location(str(self.path), rec.line, rec.row),
                                  limit_s=budget, rows_read=report.rows_read)
            report.rows_read += 1
            if self.max_rows is not None and report.rows_read > self.max_rows:
                raise IngestError(f"more than {self.max_rows:,} rows (the limit)",
                                  code="too_many_rows",
                                  location=Location(str(self.path), rec.line, rec.row))
            problem = rec.problem
            examples: list[Example] = []
            if problem is None:
                assert rec.data is not None
                mapped = self._apply_column_map(rec.data, rec)
                if shape is None:
                    shape = detect_shape(mapped)
                    if shape is None:
                        raise _unknown_shape(self.path, rec)
                    report.shape = shape
                try:
                    examples = self._parse(shape, rec, mapped, seen_ids)
                except ShapeViolation as v:
                    src_field = self._source_of(v.field)
                    problem = RowProblem(v.code, f"{v.reason} (shape {shape})",
                                         Location(str(self.path), rec.line, rec.row, src_field))
            if problem is not None:
                if self.on_invalid == "fail":
                    self.report = report
                    raise problem.to_error()
                report.add_problem(problem)
                continue
            report.rows_valid += 1
            report.examples += len(examples)
            yield from examples
        if report.rows_valid == 0:
            self.report = report
            raise IngestError(f"no valid rows ({report.rows_skipped} skipped)",
                              code="no_valid_rows", location=Location(str(self.path)),
                              skipped_by_code=dict(report.skipped_by_code))
        self.report = report

    def _parse(self, shape: str, rec: Any, mapped: dict[str, Any],
               seen_ids: SeenIds) -> list[Example]:
        row_id = self._row_id(rec.data, seen_ids, rec)
        used = set(consumed_fields(shape))
        # columns the shape does not read travel along, under their mapped names
        extra = {k: v for k, v in mapped.items() if k not in used and k != self.id_field}
        examples = parse_examples(shape, mapped, row_id=row_id, row=rec.row, line=rec.line,
                                  raw=rec.data, extra=extra, pairing=self.pairing)
        for example in examples:
            self._check_field_sizes(example)
        return examples

    def _source_of(self, field_name: str | None) -> str | None:
        """The file's own name for a field (a mapped one is reported as the user wrote it)."""
        if field_name is None:
            return None
        head, dot, rest = field_name.partition("[")
        for source, target in self.column_map.items():
            if target == head:
                return source + (dot + rest if dot else "")
        return field_name

    def iter_raw(self) -> Iterator[tuple[Example, dict[str, Any]]]:
        """Yield ``(example, source record)`` pairs, the record exactly as read."""
        for ex in self.iter_examples():
            yield ex, ex.raw

    # --- helpers -----------------------------------------------------------------------

    def _apply_column_map(self, data: dict[str, Any], rec: Any) -> dict[str, Any]:
        if not self.column_map:
            return data
        mapped = dict(data)
        for source, target in self.column_map.items():
            if source not in data:
                if rec.row == 0:
                    hint = (f" (column_map maps your column to our field: did you mean "
                            f"{{{target!r}: {source!r}}}?)" if target in data else "")
                    raise IngestError(
                        f"column {source!r} (mapped to {target!r}) is not in the file; "
                        f"its columns are {sorted(data)}{hint}",
                        code="missing_column",
                        location=Location(str(self.path), rec.line, rec.row, source),
                    )
                continue  # reported as a missing field by the shape parser
            if target in data and target not in self.column_map:
                # the file has a column of the field's name too: kept, not written over
                mapped[f"source_{target}"] = mapped[target]
            mapped[target] = mapped.pop(source)
        return mapped

    def _row_id(self, data: dict[str, Any], seen: SeenIds, rec: Any) -> str:
        if self.id_field is not None:
            if data.get(self.id_field) in (None, ""):
                raise ShapeViolation("missing_id", "the id field is missing or empty",
                                     self.id_field)
            row_id = str(data[self.id_field])
            if (first := seen.first_row(row_id, rec.row)) is not None:
                raise ShapeViolation("duplicate_id",
                                     f"id {row_id!r} already used by row {first}",
                                     self.id_field)
            return row_id
        # Content-addressed default: the same row keeps its id when the file is
        # reordered or appended to. Exact duplicate rows are numbered in file order.
        digest = hashlib.sha256(orjson.dumps(data, option=orjson.OPT_SORT_KEYS,
                                             default=str)).hexdigest()[:16]
        n = seen.occurrence(digest)
        return digest if n == 1 else f"{digest}-{n}"


#: the columns each shape is told apart by, for the error that lists them
_SHAPE_COLUMNS = {
    "standard": "prompt, chosen, rejected (strings)",
    "implicit_prompt": "chosen, rejected (full texts)",
    "conversational": "prompt, chosen, rejected (message lists)",
    "conversational_implicit": "chosen, rejected (message lists)",
    "kto": "prompt, completion, label",
    "hh_raw": "chosen, rejected (\\n\\nHuman: ... \\n\\nAssistant: ...)",
    "openai": "input, preferred_output, non_preferred_output",
    "ultrafeedback_binarized": "prompt (string), chosen, rejected (message lists)",
    "orca": "system, question, chosen, rejected",
    "pku_saferlhf": "prompt, response_0, response_1, better_response_id",
    "shp": "history, human_ref_A, human_ref_B, labels",
    "ranked": "prompt or instruction, completions or answers (rated or ranked)",
}


def _unknown_shape(path: Path, rec: Any) -> IngestError:
    known = "; ".join(f"{name}: {cols}" for name, cols in _SHAPE_COLUMNS.items())
    return IngestError(
        f"cannot tell the data's shape from its columns {sorted(rec.data)}; the shapes and "
        f"their columns: {known} (rename yours with column_map, e.g. "
        '{"question": "prompt"}, or force one with shape)',
        code="unknown_shape",
        location=Location(str(path), rec.line, rec.row),
        columns=sorted(rec.data), shapes=list(SHAPES),
    )


def _check_column_map(column_map: dict[str, str]) -> dict[str, str]:
    """``{source column: field}``; the old ``{field: source}`` direction is refused with
    the map written the right way round."""
    for source, target in column_map.items():
        if not isinstance(source, str) or not isinstance(target, str):
            raise ConfigError("column_map must map column names (strings) to field names",
                              code="invalid_column_map")
    targets = set(column_map.values())
    unknown = sorted(targets - set(CANONICAL_FIELDS))
    if unknown:
        if column_map and set(column_map) <= set(CANONICAL_FIELDS):
            flipped = {v: k for k, v in column_map.items()}
            raise ConfigError(
                "column_map maps your column to our field, as pandas' and datasets' rename "
                f"do: write {orjson.dumps(flipped).decode()} instead of "
                f"{orjson.dumps(column_map).decode()}", code="invalid_column_map")
        raise ConfigError(f"column_map names unknown fields {unknown}; known fields are "
                          f"{', '.join(CANONICAL_FIELDS)}", code="invalid_column_map")
    if len(targets) != len(column_map):
        repeated = sorted(t for t in targets if list(column_map.values()).count(t) > 1)
        raise ConfigError(f"column_map maps several columns onto {repeated}",
                          code="invalid_column_map")
    return column_map
