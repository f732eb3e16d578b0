"""Stream raw records out of a file, one at a time, never loading the file whole.

Supported containers: JSON Lines, a top-level JSON array, Parquet and CSV, each
optionally gzip-compressed (detected from the magic bytes, not the file name).
Problems confined to one record (bad JSON, invalid UTF-8, an over-long line) are
yielded as ``RawRecord`` with a ``problem`` so the caller's ``on_invalid`` policy
decides; problems with the file as a whole raise :class:`IngestError`.
"""

from __future__ import annotations

import csv
import gzip
import io
import shutil
import tempfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Literal

import orjson

from ..errors import IngestError, Location, RowProblem

FileFormat = Literal["jsonl", "json", "parquet", "csv"]
FILE_FORMATS: tuple[str, ...] = ("jsonl", "json", "parquet", "csv")

DEFAULT_MAX_LINE_BYTES = 8 * 1024 * 1024
#: a gzip file may inflate to this many times its size (text compresses 5–15×) ...
DEFAULT_MAX_DECOMPRESSION_RATIO = 200.0
#: ... and to this many bytes in any case, before the ratio applies
DECOMPRESSION_FLOOR = 64 * 1024 * 1024
_GZIP_MAGIC = b"\x1f\x8b"
_PARQUET_MAGIC = b"PAR1"
_SUFFIXES: dict[str, FileFormat] = {
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "json",
    ".parquet": "parquet",
    ".pq": "parquet",
    ".csv": "csv",
}


@dataclass(slots=True)
class RawRecord:
    """One record as read from the file: a dict, or the problem that prevented it."""

    row: int  # 0-based ordinal of the record in the file
    line: int | None  # 1-based line number for text formats
    data: dict[str, Any] | None
    problem: RowProblem | None = None


def is_gzip(path: Path) -> bool:
    with open(path, "rb") as fh:
        return fh.read(2) == _GZIP_MAGIC


def detect_format(path: Path) -> FileFormat:
    """Guess the container from the file name, falling back to the first bytes."""
    suffixes = [s.lower() for s in path.suffixes]
    while suffixes and suffixes[-1] in (".gz", ".gzip"):
        suffixes.pop()
    if suffixes and suffixes[-1] in _SUFFIXES:
        return _SUFFIXES[suffixes[-1]]
    with _open_binary(path) as fh:
        head = _guarded_read(fh, path, 4096)
    if head.startswith(_PARQUET_MAGIC):
        return "parquet"
    stripped = head.lstrip(b"\xef\xbb\xbf \t\r\n")
    if stripped.startswith(b"["):
        return "json"
    if stripped.startswith(b"{"):
        return "jsonl"
    if not stripped:
        raise IngestError("file is empty", code="empty_file", location=Location(str(path)))
    return "csv"


def iter_raw_records(
    path: str | Path,
    *,
    file_format: FileFormat | None = None,
    max_line_bytes: int = DEFAULT_MAX_LINE_BYTES,
    max_decompression_ratio: float = DEFAULT_MAX_DECOMPRESSION_RATIO,
) -> Iterator[RawRecord]:
    """Yield every record of ``path`` in file order."""
    path = Path(path)
    if not path.is_file():
        raise IngestError("no such file", code="file_not_found", location=Location(str(path)))
    fmt = file_format or detect_format(path)
    if fmt not in FILE_FORMATS:
        raise IngestError(
            f"unknown format {fmt!r}; expected one of {', '.join(FILE_FORMATS)}",
            code="unknown_format",
            location=Location(str(path)),
        )
    reader = {"jsonl": _iter_jsonl, "json": _iter_json_array, "parquet": _iter_parquet,
              "csv": _iter_csv}[fmt]
    yield from reader(path, max_line_bytes, max_decompression_ratio)


# --- helpers ---------------------------------------------------------------------------


class _InflationGuard(io.RawIOBase):
    """A gzip stream that refuses to inflate past the limit: a small file that expands to
    gigabytes (a decompression bomb) ends the read at once, not after minutes."""

    def __init__(self, path: Path, max_ratio: float) -> None:
        self.path, self.ratio = path, max_ratio
        self.inner = gzip.open(path, "rb")  # noqa: SIM115 - closed by close()
        self.limit = max(DECOMPRESSION_FLOOR, max_ratio * path.stat().st_size)
        self.inflated = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        n = self.inner.readinto(buffer)
        self.inflated += n
        if self.inflated > self.limit:
            raise IngestError(
                f"the gzip file inflates past {self.limit:,.0f} bytes, over "
                f"{self.ratio:g} times its size: refused as a decompression bomb",
                code="decompression_limit", location=Location(str(self.path)))
        return n

    def close(self) -> None:
        self.inner.close()
        super().close()


def _open_binary(path: Path,
                 max_ratio: float = DEFAULT_MAX_DECOMPRESSION_RATIO) -> BinaryIO:
    if is_gzip(path):
        return io.BufferedReader(_InflationGuard(path, max_ratio), 1 << 16)  # type: ignore[return-value]
    return open(path, "rb")


def _guarded_read(fh: BinaryIO, path: Path, n: int) -> bytes:
    try:
        return fh.read(n)
    except (EOFError, gzip.BadGzipFile, zlib.error) as exc:
        raise _gzip_error(path, exc, None) from exc


def _gzip_error(path: Path, exc: Exception, after_line: int | None) -> IngestError:
    where = f" after line {after_line}" if after_line else ""
    if isinstance(exc, EOFError):
        return IngestError(
            f"the gzip stream ends before its end marker{where}: the file is truncated",
            code="truncated_gzip",
            location=Location(str(path), line=after_line + 1 if after_line else None),
        )
    return IngestError(
        f"the file is not valid gzip{where} ({exc})",
        code="invalid_gzip",
        location=Location(str(path), line=after_line + 1 if after_line else None),
    )


def _problem(path: Path, code: str, reason: str, *, row: int, line: int | None) -> RawRecord:
    return RawRecord(row, line, None, RowProblem(code, reason, Location(str(path), line, row)))


def _empty(path: Path) -> IngestError:
    return IngestError("file is empty: no records found", code="empty_file",
                       location=Location(str(path)))


#: bytes of blank lines (and whitespace-only lines) a file may hold. Blank lines are not
#: records, so no row limit bounds them, and a small gzip of newlines inflates to GiBs that
#: would each cost a loop turn (a 4 MB one held a worker 153 s): past this the file is
#: refused, at the line it happened, in a fraction of a second (500k CRLF blank lines
#: between records still read).
MAX_BLANK_BYTES = 1024 * 1024


def _too_blank(path: Path, line_no: int) -> IngestError:
    return IngestError(f"more than {MAX_BLANK_BYTES:,} bytes of blank lines by line "
                       f"{line_no:,}: a data file holds records, not empty lines",
                       code="too_much_blank_space", location=Location(str(path), line=line_no))


def _iter_jsonl(path: Path, max_line_bytes: int,
                max_ratio: float) -> Iterator[RawRecord]:
    line_no = 0
    row = 0
    blank = 0
    with _open_binary(path, max_ratio) as fh:
        while True:
            try:
                line = fh.readline(max_line_bytes + 1)
            except (EOFError, gzip.BadGzipFile, zlib.error) as exc:
                raise _gzip_error(path, exc, line_no) from exc
            if not line:
                break
            line_no += 1
            if len(line) > max_line_bytes and not line.endswith(b"\n"):
                total = len(line) + _skip_rest_of_line(fh, path, line_no)
                yield _problem(
                    path, "line_too_long",
                    f"line is {total:,} bytes, over the limit of {max_line_bytes:,} bytes",
                    row=row, line=line_no,
                )
                row += 1
                continue
            if not line.strip():
                blank += len(line)
                if blank > MAX_BLANK_BYTES:
                    raise _too_blank(path, line_no)
                continue
            try:
                line.decode("utf-8")
            except UnicodeDecodeError as exc:
                yield _problem(path, "invalid_utf8",
                               f"invalid UTF-8 at byte {exc.start} of the line", row=row,
                               line=line_no)
                row += 1
                continue
            try:
                obj = orjson.loads(line)
            except orjson.JSONDecodeError as exc:
                yield _problem(path, "invalid_json", f"not valid JSON ({exc})", row=row,
                               line=line_no)
                row += 1
                continue
            if not isinstance(obj, dict):
                yield _problem(path, "not_an_object",
                               f"expected a JSON object, found {type(obj).__name__}", row=row,
                               line=line_no)
            else:
                yield RawRecord(row, line_no, obj)
            row += 1
    if row == 0:
        raise _empty(path)


def _skip_rest_of_line(fh: BinaryIO, path: Path, line_no: int) -> int:
    skipped = 0
    while True:
        try:
            chunk = fh.readline(1 << 20)
        except (EOFError, gzip.BadGzipFile, zlib.error) as exc:
            raise _gzip_error(path, exc, line_no - 1) from exc
        skipped += len(chunk)
        if not chunk or chunk.endswith(b"\n"):
            return skipped


def _iter_json_array(path: Path, max_line_bytes: int,
                     max_ratio: float) -> Iterator[RawRecord]:
    import ijson  # C backend when available; pure-python fallback otherwise

    with _open_binary(path, max_ratio) as fh:
        head = _guarded_read(fh, path, 4096).lstrip(b"\xef\xbb\xbf \t\r\n")
        if not head:
            raise _empty(path)
        if not head.startswith(b"["):
            raise IngestError(
                "a .json file must hold an array of objects at the top level "
                "(for one object per line use JSON Lines)",
                code="not_an_array", location=Location(str(path), line=1),
            )
    row = 0
    with _open_binary(path, max_ratio) as raw:
        fh = _RecordSizeGuard(raw, path, max_line_bytes)
        try:
            for obj in ijson.items(fh, "item", use_float=True):
                fh.record_done(row)
                if isinstance(obj, dict):
                    yield RawRecord(row, None, obj)
                else:
                    yield _problem(path, "not_an_object",
                                   f"expected a JSON object, found {type(obj).__name__}",
                                   row=row, line=None)
                row += 1
        except (EOFError, gzip.BadGzipFile, zlib.error) as exc:
            raise _gzip_error(path, exc, None) from exc
        except ijson.JSONError as exc:
            raise IngestError(f"not valid JSON after {row} records ({exc})",
                              code="invalid_json", location=Location(str(path), row=row)) from exc
        except UnicodeDecodeError as exc:
            raise IngestError(f"invalid UTF-8 after {row} records", code="invalid_utf8",
                              location=Location(str(path), row=row)) from exc
    if row == 0:
        raise _empty(path)


class _RecordSizeGuard:
    """The file under a streaming JSON parser, refusing any single record larger than the
    limit as soon as the parser has read that far into it (a parser would otherwise
    build the whole value in memory first). Inside one array there is no way to skip to
    the next record, so the read ends with an error naming the record."""

    def __init__(self, fh: BinaryIO, path: Path, limit: int) -> None:
        self.fh, self.path, self.limit = fh, path, limit
        self.consumed = self.mark = 0
        self.row = 0

    def record_done(self, row: int) -> None:
        self.mark, self.row = self.consumed, row + 1

    def read(self, n: int = -1) -> bytes:
        data = self.fh.read(n)
        self.consumed += len(data)
        # the parser reads ahead by one buffer: allow for it
        if self.consumed - self.mark > self.limit + (1 << 16):
            raise IngestError(f"record {self.row} is larger than the limit of "
                              f"{self.limit:,} bytes", code="record_too_large",
                              location=Location(str(self.path), row=self.row))
        return data


def _iter_parquet(path: Path, max_line_bytes: int,
                  max_ratio: float) -> Iterator[RawRecord]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    tmp = None
    source: Path = path
    if is_gzip(path):
        # Parquet needs random access: decompress to a temporary file on disk, not memory.
        tmp = tempfile.NamedTemporaryFile(suffix=".parquet", delete=False)  # noqa: SIM115
        try:
            with _open_binary(path, max_ratio) as src, tmp:
                shutil.copyfileobj(src, tmp, 1 << 20)
        except (EOFError, gzip.BadGzipFile, zlib.error) as exc:
            Path(tmp.name).unlink(missing_ok=True)
            raise _gzip_error(path, exc, None) from exc
        except IngestError:
            Path(tmp.name).unlink(missing_ok=True)
            raise
        source = Path(tmp.name)
    try:
        try:
            pf = pq.ParquetFile(source)
        except (pa.ArrowInvalid, OSError) as exc:
            raise IngestError(f"not a valid Parquet file ({exc})", code="invalid_parquet",
                              location=Location(str(path))) from exc
        row = 0
        for batch in pf.iter_batches(batch_size=1024):
            for obj in batch.to_pylist():
                yield RawRecord(row, None, obj)
                row += 1
        if row == 0:
            raise _empty(path)
    finally:
        if tmp is not None:
            Path(tmp.name).unlink(missing_ok=True)


def _iter_csv(path: Path, max_line_bytes: int,
              max_ratio: float) -> Iterator[RawRecord]:
    csv.field_size_limit(max_line_bytes)
    with _open_binary(path, max_ratio) as fh:
        text = io.TextIOWrapper(fh, encoding="utf-8-sig", errors="strict", newline="")
        reader = csv.reader(text)
        row = 0
        header: list[str] | None = None
        ended = 0  # the line the previous record ended on
        blank = 0  # blank lines: each at least a byte
        try:
            for fields in reader:
                # a quoted field may span lines: a record is named by the line it starts on
                line_no, ended = ended + 1, reader.line_num
                if header is None:
                    if not fields:
                        continue
                    header = fields
                    if len(set(header)) != len(header):
                        raise IngestError("the header repeats a column name",
                                          code="duplicate_column",
                                          location=Location(str(path), line=line_no))
                    continue
                if not fields:
                    blank += 1
                    if blank > MAX_BLANK_BYTES:
                        raise _too_blank(path, line_no)
                    continue
                if len(fields) != len(header):
                    yield _problem(path, "wrong_field_count",
                                   f"row has {len(fields)} fields, the header has {len(header)}",
                                   row=row, line=line_no)
                else:
                    yield RawRecord(row, line_no, dict(zip(header, fields, strict=True)))
                row += 1
        except csv.Error as exc:
            code = "line_too_long" if "field larger" in str(exc) else "invalid_csv"
            raise IngestError(str(exc), code=code,
                              location=Location(str(path), line=ended + 1)) from exc
        except UnicodeDecodeError as exc:
            raise IngestError("invalid UTF-8", code="invalid_utf8",
                              location=Location(str(path), line=ended + 1)) from exc
        except (EOFError, gzip.BadGzipFile, zlib.error) as exc:
            raise _gzip_error(path, exc, reader.line_num) from exc
    if header is None or row == 0:
        raise _empty(path)
