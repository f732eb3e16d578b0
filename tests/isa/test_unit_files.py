"""The unit file a map/reduce job's reading task leaves its reduce step: every column of
the table read without texts comes back exactly, on real data at both levels."""

from __future__ import annotations

import io

import numpy as np
import pytest

from isa import PreferenceFile
from isa.pipeline import read_units
from isa.unit_files import read_unit_file, write_unit_file
from tests.conftest import write_jsonl


@pytest.mark.parametrize("level", ["pair", "item"])
def test_unit_file_round_trip(tmp_path, hh_rows, level):
    data = PreferenceFile(write_jsonl(tmp_path / "hh.jsonl", hh_rows + [{"bad": 1}]),
                          on_invalid="skip")
    table, report = read_units(data, level=level, keep_texts=False)
    buf = io.BytesIO()
    write_unit_file(table, report, buf)
    back, rep = read_unit_file(io.BytesIO(buf.getvalue()))
    for name in ("level", "template", "row_ids", "sides", "text_labels", "texts"):
        assert getattr(back, name) == getattr(table, name), name
    for name in ("source_rows", "groups", "text_keys"):
        assert np.array_equal(getattr(back, name), getattr(table, name)), name
    assert back.meta.keys() == table.meta.keys()
    for k in table.meta:
        np.testing.assert_array_equal(back.meta[k], table.meta[k])
    assert (rep.rows_read, rep.rows_valid, rep.rows_skipped, rep.shape) == (
        report.rows_read, report.rows_valid, report.rows_skipped, report.shape)
    assert rep.rows_skipped == 1 and dict(rep.skipped_by_code) == dict(report.skipped_by_code)


def test_a_table_without_keys_is_refused(hh_rows, tmp_path):
    table, report = read_units(PreferenceFile(write_jsonl(tmp_path / "a.jsonl", hh_rows[:5])))
    table.text_keys = None
    with pytest.raises(ValueError, match="text keys"):
        write_unit_file(table, report, io.BytesIO())
