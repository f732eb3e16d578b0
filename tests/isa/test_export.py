"""Writers: formats by file name, and no half-written file when writing fails."""

from __future__ import annotations

import gzip
import json

import pyarrow.parquet as pq
import pytest

from isa import ConfigError, write_records

ROWS = [{"a": 1, "b": "x", "m": [{"role": "user", "content": "hi"}]},
        {"a": 2, "b": "y", "m": [{"role": "user", "content": "yo"}]}]


@pytest.mark.parametrize("name", ["o.jsonl", "o.jsonl.gz", "o.json", "o.parquet", "o.csv"])
def test_formats_by_name(tmp_path, name):
    path = tmp_path / name
    assert write_records(iter(ROWS), path) == 2
    if name.endswith(".parquet"):
        assert pq.read_table(path).to_pylist() == ROWS
    elif name.endswith(".csv"):
        lines = path.read_text().splitlines()
        assert lines[0] == "a,b,m" and json.loads(lines[1].split(",", 2)[2].strip('"')
                                                 .replace('""', '"')) == ROWS[0]["m"]
    else:
        raw = gzip.decompress(path.read_bytes()) if name.endswith(".gz") else path.read_bytes()
        back = json.loads(raw) if name.endswith(".json") else [json.loads(x) for x in
                                                               raw.splitlines()]
        assert back == ROWS


def test_failure_midway_leaves_no_file(tmp_path):
    def rows():
        yield ROWS[0]
        raise RuntimeError("worker killed")

    (tmp_path / "keep.txt").write_text("x")
    with pytest.raises(RuntimeError):
        write_records(rows(), tmp_path / "o.jsonl")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep.txt"]


def test_unknown_output_format(tmp_path):
    with pytest.raises(ConfigError) as exc:
        write_records(iter(ROWS), tmp_path / "o.yaml")
    assert exc.value.code == "unknown_output_format"


def test_csv_cells_never_start_a_formula(tmp_path):
    import csv

    risky = ["=1+1", " =HYPERLINK(\"http://x\")", "\u00a0+A1", "\uff1dSUM(A1)", "-2+3",
             "@cmd", "\t=1", "\r=1", "\n =1"]
    plain = ["a = b", "1-2", "x@y.z", "", "'quoted"]
    path = tmp_path / "o.csv"
    write_records(iter([{"t": t} for t in risky + plain]), path)
    with open(path, newline="") as fh:
        cells = [row[0] for row in csv.reader(fh)][1:]
    assert cells[:len(risky)] == ["'" + t for t in risky]
    assert cells[len(risky):] == plain
