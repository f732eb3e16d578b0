"""Containers (JSON Lines, JSON array, Parquet, CSV, each gzip'd or not) and the clear
errors bad files get."""

from __future__ import annotations

import csv
import gzip
import io
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from isa import ConfigError, IngestError, PreferenceFile
from tests.conftest import write_jsonl


def _write(path: Path, fmt: str, rows: list[dict], gz: bool) -> Path:
    if fmt == "jsonl":
        data = "".join(json.dumps(r) + "\n" for r in rows).encode()
    elif fmt == "json":
        data = json.dumps(rows, indent=1).encode()
    elif fmt == "csv":
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
        data = buf.getvalue().encode()
    else:
        sink = io.BytesIO()
        pq.write_table(pa.Table.from_pylist(rows), sink)
        data = sink.getvalue()
    path.write_bytes(gzip.compress(data) if gz else data)
    return path


@pytest.mark.parametrize("gz", [False, True])
@pytest.mark.parametrize("fmt", ["jsonl", "json", "parquet", "csv"])
def test_every_container_reads_the_same_rows(tmp_path, alpaca_rows, fmt, gz):
    rows = alpaca_rows[:40]
    path = _write(tmp_path / f"data.{fmt}{'.gz' if gz else ''}", fmt, rows, gz)
    data = PreferenceFile(path)
    examples = list(data)
    assert data.report.file_format == fmt
    assert data.report.shape == "standard"
    assert [e.prompt for e in examples] == [r["prompt"] for r in rows]
    assert [e.chosen for e in examples] == [r["chosen"] for r in rows]
    assert [e.rejected for e in examples] == [r["rejected"] for r in rows]
    # extra columns are kept (CSV cells come back as text)
    assert [str(e.extra["margin"]) for e in examples] == [str(r["margin"]) for r in rows]
    assert examples[3].row == 3


def test_gzip_is_detected_from_bytes_not_name(tmp_path, alpaca_rows):
    path = write_jsonl(tmp_path / "data.jsonl", alpaca_rows[:5], gz=True)  # no .gz suffix
    assert len(list(PreferenceFile(path))) == 5


def test_row_ids_are_stable_under_reordering_and_echo_id_field(tmp_path, alpaca_rows):
    rows = alpaca_rows[:30]
    a = {e.row_id: e.prompt for e in PreferenceFile(write_jsonl(tmp_path / "a.jsonl", rows))}
    b = {e.row_id: e.prompt for e in
         PreferenceFile(write_jsonl(tmp_path / "b.jsonl", rows[::-1]))}
    assert a == b and len(a) == 30
    with_ids = [{"uid": f"q{i}", **r} for i, r in enumerate(rows)]
    ids = [e.row_id for e in PreferenceFile(write_jsonl(tmp_path / "c.jsonl", with_ids),
                                            id_field="uid")]
    assert ids == [f"q{i}" for i in range(30)]


def test_empty_file(tmp_path):
    for name, content in [("e.jsonl", b""), ("w.jsonl", b"\n \n"), ("e.json", b"[]"),
                          ("e.csv", b"")]:
        path = tmp_path / name
        path.write_bytes(content)
        with pytest.raises(IngestError) as exc:
            list(PreferenceFile(path))
        assert exc.value.code == "empty_file", name
        assert name in exc.value.message


def test_wrong_columns_name_what_was_found(tmp_path):
    path = write_jsonl(tmp_path / "x.jsonl", [{"question": "q", "answer": "a"}])
    with pytest.raises(IngestError) as exc:
        list(PreferenceFile(path))
    assert exc.value.code == "unknown_shape"
    assert "['answer', 'question']" in exc.value.message
    assert exc.value.details["line"] == 1


def test_column_map_names_missing_column(tmp_path, alpaca_rows):
    path = write_jsonl(tmp_path / "x.jsonl", alpaca_rows[:3])
    with pytest.raises(IngestError) as exc:
        list(PreferenceFile(path, column_map={"question": "prompt"}))
    assert exc.value.code == "missing_column"
    assert "'question'" in exc.value.message


def test_column_map_renames_their_column_to_our_field(tmp_path, alpaca_rows):
    rows = [{"question": r["prompt"], "good": r["chosen"], "bad": r["rejected"],
             "confidence": r["margin"]} for r in alpaca_rows[:5]]
    data = PreferenceFile(write_jsonl(tmp_path / "x.jsonl", rows),
                          column_map={"question": "prompt", "good": "chosen", "bad": "rejected",
                                      "confidence": "margin"})
    ex = list(data)
    assert data.report.shape == "standard"
    assert ex[2].chosen == rows[2]["good"] and ex[2].prompt == rows[2]["question"]
    # a confidence column mapped onto margin travels as 'margin', which the method reads
    assert ex[2].extra == {"margin": rows[2]["confidence"]}


def test_column_map_in_the_old_direction_is_refused_saying_how_to_write_it(tmp_path,
                                                                          alpaca_rows):
    path = write_jsonl(tmp_path / "x.jsonl", alpaca_rows[:3])
    with pytest.raises(ConfigError) as exc:
        PreferenceFile(path, column_map={"prompt": "instruction_text", "chosen": "good"})
    assert exc.value.code == "invalid_column_map"
    assert '{"instruction_text":"prompt","good":"chosen"}' in exc.value.message
    with pytest.raises(ConfigError, match="several columns onto"):
        PreferenceFile(path, column_map={"a": "prompt", "b": "prompt"})


def test_a_mapped_column_that_is_missing_hints_at_the_reversed_map(tmp_path, alpaca_rows):
    rows = [{"question": r["prompt"], "chosen": r["chosen"], "rejected": r["rejected"]}
            for r in alpaca_rows[:3]]
    path = write_jsonl(tmp_path / "x.jsonl", rows)
    with pytest.raises(IngestError) as exc:  # {ours: theirs}, which now reads the other way
        list(PreferenceFile(path, column_map={"prompt": "question"}))
    assert exc.value.code == "missing_column"
    assert "did you mean {'question': 'prompt'}" in exc.value.message


def test_csv_errors_name_the_line_where_the_record_starts(tmp_path):
    path = tmp_path / "multi.csv"
    # record 1 spans lines 2-4 (a quoted answer with two line breaks); record 2 is line 5
    path.write_text('prompt,chosen,rejected\nhi,"one\ntwo\nthree",no\nhey,yes,\n')
    data = PreferenceFile(path, on_invalid="skip")
    (ex,) = list(data)
    assert ex.line == 2 and ex.chosen == "one\ntwo\nthree"
    assert data.report.skipped[0].to_dict()["line"] == 5
    # a header that fits no shape: the error is at the first record's first line
    bad = tmp_path / "bad.csv"
    bad.write_text('q,a\n"multi\nline",x\n')
    with pytest.raises(IngestError) as exc:
        list(PreferenceFile(bad))
    assert exc.value.code == "unknown_shape" and exc.value.details["line"] == 2
    for shape in ("ultrafeedback_binarized", "pku_saferlhf", "ranked", "standard"):
        assert shape in exc.value.message and shape in exc.value.details["shapes"]


def test_invalid_utf8_names_the_line(tmp_path, alpaca_rows):
    lines = [json.dumps(r).encode() for r in alpaca_rows[:4]]
    lines[2] = lines[2][:40] + b"\xff\xfe" + lines[2][40:]
    path = tmp_path / "bad.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    with pytest.raises(IngestError) as exc:
        list(PreferenceFile(path))
    assert exc.value.code == "invalid_utf8"
    assert exc.value.details["line"] == 3
    assert "bad.jsonl, line 3" in exc.value.message


def test_truncated_gzip(tmp_path, alpaca_rows):
    blob = gzip.compress("".join(json.dumps(r) + "\n" for r in alpaca_rows[:50]).encode())
    path = tmp_path / "cut.jsonl.gz"
    path.write_bytes(blob[: len(blob) // 2])
    with pytest.raises(IngestError) as exc:
        list(PreferenceFile(path, on_invalid="skip"))
    assert exc.value.code == "truncated_gzip"
    assert "truncated" in exc.value.message


def test_twenty_megabyte_line_is_refused_without_loading_it(tmp_path, alpaca_rows):
    huge = {"prompt": "x" * (20 * 1024 * 1024), "chosen": "a", "rejected": "b"}
    path = write_jsonl(tmp_path / "big.jsonl", [alpaca_rows[0], huge, alpaca_rows[1]])
    with pytest.raises(IngestError) as exc:
        list(PreferenceFile(path))
    assert exc.value.code == "line_too_long"
    assert exc.value.details["line"] == 2
    assert "20,971,5" in exc.value.message  # its size, in bytes
    data = PreferenceFile(path, on_invalid="skip")
    assert len(list(data)) == 2  # the lines after it are still read
    assert data.report.skipped_by_code == {"line_too_long": 1}


def test_skip_policy_counts_and_lists_bad_rows(tmp_path, alpaca_rows):
    rows = [json.dumps(r) for r in alpaca_rows[:6]]
    rows[1] = "{not json"
    rows[3] = json.dumps({"prompt": "p", "chosen": 5, "rejected": "r"})
    rows[4] = json.dumps({"prompt": "p", "chosen": "c"})
    path = tmp_path / "mixed.jsonl"
    path.write_text("\n".join(rows) + "\n")
    with pytest.raises(IngestError) as exc:
        list(PreferenceFile(path))
    assert exc.value.code == "invalid_json" and exc.value.details["line"] == 2
    data = PreferenceFile(path, on_invalid="skip")
    assert len(list(data)) == 3
    report = data.report.to_dict()
    assert report["rows_skipped"] == 3
    assert report["skipped_by_code"] == {"invalid_json": 1, "wrong_type": 1, "missing_field": 1}
    listed = {(p["line"], p["code"], p.get("field")) for p in report["skipped"]}
    assert listed == {(2, "invalid_json", None), (4, "wrong_type", "chosen"),
                      (5, "missing_field", "rejected")}


def test_all_rows_invalid_is_an_error_even_when_skipping(tmp_path):
    path = tmp_path / "x.jsonl"
    path.write_text('{"prompt": "p", "chosen": "", "rejected": "r"}\n')
    with pytest.raises(IngestError) as exc:
        list(PreferenceFile(path, on_invalid="skip"))
    assert exc.value.code == "no_valid_rows"


def test_row_limit(tmp_path, alpaca_rows):
    path = write_jsonl(tmp_path / "x.jsonl", alpaca_rows[:10])
    with pytest.raises(IngestError) as exc:
        list(PreferenceFile(path, max_rows=5))
    assert exc.value.code == "too_many_rows"


def test_json_that_is_not_an_array(tmp_path):
    path = tmp_path / "x.json"
    path.write_text('{"prompt": "p"}')
    with pytest.raises(IngestError) as exc:
        list(PreferenceFile(path))
    assert exc.value.code == "not_an_array"


def test_duplicate_ids_are_row_errors(tmp_path, alpaca_rows):
    rows = [{"id": 1, **alpaca_rows[0]}, {"id": 1, **alpaca_rows[1]}]
    with pytest.raises(IngestError) as exc:
        list(PreferenceFile(write_jsonl(tmp_path / "x.jsonl", rows), id_field="id"))
    assert exc.value.code == "duplicate_id" and exc.value.details["line"] == 2


# --- small inputs must not cost large resources ------------------------------------------


def _peak_rss_mb() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def test_a_decompression_bomb_is_refused_at_once(tmp_path):
    # 256 MiB of one byte gzip to a few hundred KB: refused while inflating, not after
    path = tmp_path / "bomb.jsonl.gz"
    with gzip.open(path, "wb", compresslevel=9) as fh:
        block = b"a" * (1 << 20)
        for _ in range(256):
            fh.write(block)
    assert path.stat().st_size < 1_000_000
    for fmt in ("jsonl", "csv"):
        with pytest.raises(IngestError) as exc:
            list(PreferenceFile(path, file_format=fmt))
        assert exc.value.code == "decompression_limit"


@pytest.mark.parametrize("fmt", ["jsonl", "csv"])
def test_blank_lines_have_a_budget_and_the_error_names_the_line(tmp_path, alpaca_rows, fmt):
    # blank lines are no records: only the inflation ratio bounded them (a 4 MB gzip of
    # newlines held a worker 153 s); now the read stops at 1 MiB of them
    from isa.ingest.readers import MAX_BLANK_BYTES

    path = tmp_path / f"blank.{fmt}.gz"
    with gzip.open(path, "wb", compresslevel=9) as fh:
        fh.write(b"prompt,chosen,rejected\np,c,r\n" if fmt == "csv" else
                 json.dumps(alpaca_rows[0]).encode() + b"\n")
        fh.write(b"\n" * (3 << 20))
    with pytest.raises(IngestError) as exc:
        list(PreferenceFile(path, file_format=fmt))
    assert exc.value.code == "too_much_blank_space"
    line = exc.value.location.line
    assert MAX_BLANK_BYTES < line <= MAX_BLANK_BYTES + 3, line
    assert f"line {line:,}" in exc.value.message
    # a file with a few blank lines between records reads as before
    ok = tmp_path / f"ok.{fmt}"
    rows = alpaca_rows[:3]
    if fmt == "csv":
        ok.write_text("prompt,chosen,rejected\n\n" + "\n\n".join(
            f"{r['prompt'][:20]!r},c,r" for r in rows) + "\n\n")
    else:
        ok.write_text("\n\n".join(json.dumps(r) for r in rows) + "\n  \n")
    assert len(list(PreferenceFile(ok, file_format=fmt))) == 3


def test_a_huge_string_in_a_json_array_ends_the_read_with_its_record_number(tmp_path,
                                                                          alpaca_rows):
    path = tmp_path / "big.json"
    huge = {"prompt": "p", "chosen": "x" * (24 << 20), "rejected": "r"}
    path.write_text(json.dumps([alpaca_rows[0], alpaca_rows[1], huge, alpaca_rows[2]]))
    before = _peak_rss_mb()
    with pytest.raises(IngestError) as exc:
        list(PreferenceFile(path, max_line_bytes=1 << 20))
    assert exc.value.code == "record_too_large" and exc.value.details["row"] == 2
    assert _peak_rss_mb() - before < 100  # the 24 MiB value was never built


def test_an_over_long_field_makes_its_row_invalid_naming_field_and_line(tmp_path,
                                                                       alpaca_rows):
    rows = [alpaca_rows[0], {**alpaca_rows[1], "rejected": "y" * 5000}, alpaca_rows[2]]
    data = PreferenceFile(write_jsonl(tmp_path / "x.jsonl", rows), max_field_chars=4000,
                          on_invalid="skip")
    assert len(list(data)) == 2
    problem = data.report.skipped[0]
    assert (problem.code, problem.location.line, problem.location.field) == (
        "field_too_long", 2, "rejected")
