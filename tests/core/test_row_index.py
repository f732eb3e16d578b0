"""The row index (core/row_index.py): pages and rows by id read only the row groups that
hold them, texts come back as read (message lists too), and the statistics count what
the file holds."""

from __future__ import annotations

import json

import numpy as np
import pytest

from core.row_index import ROW_GROUP, RowIndex, RowIndexWriter, StatsCollector, histogram
from isa.ingest.dataset import PreferenceFile

N = 2 * ROW_GROUP + 500


def _rows(n: int) -> list[dict]:
    rows = []
    for i in range(n):
        row = {"prompt": f"question {i}", "chosen": "yes " * (i % 50 + 1), "rejected": "no",
               "margin": float(i % 7), "judge": f"j{i % 3}"}
        rows.append(row)
    return rows


@pytest.fixture()
def indexed(tmp_path):
    src = tmp_path / "d.jsonl"
    src.write_text("".join(json.dumps(r) + "\n" for r in _rows(N)))
    examples = list(PreferenceFile(src))
    stats = StatsCollector()
    with open(tmp_path / "rows.parquet", "wb") as fh:
        writer = RowIndexWriter(fh)
        for ex in examples:
            writer.add(ex)
            stats.add(ex)
        writer.close()
    return RowIndex(tmp_path / "rows.parquet"), examples, stats


def test_a_page_at_any_offset_reads_only_its_groups(indexed):
    index, examples, _ = indexed
    assert index.rows == N
    last = index.page(N - 20, 50)  # the last page: the short final group only
    assert [r["row_id"] for r in last] == [ex.row_id for ex in examples[N - 20:]]
    assert index.groups_read == 1
    first = index.page(0, 20)
    assert [r["prompt"] for r in first] == [f"question {i}" for i in range(20)]
    assert index.groups_read == 2
    across = index.page(ROW_GROUP - 5, 10)  # straddles two groups: reads both
    assert [r["row"] for r in across] == [ex.row for ex in examples[ROW_GROUP - 5:ROW_GROUP + 5]]
    assert index.groups_read == 4
    assert index.page(N, 10) == [] and index.page(0, 0) == []


def test_rows_by_id_read_the_groups_that_hold_them(indexed):
    index, examples, _ = indexed
    ids = index.column("row_id")["row_id"]
    before = index.groups_read
    wanted = [examples[N - 1].row_id, examples[3].row_id, "no-such-row"]
    rows = index.by_ids(wanted, ids)
    assert set(rows) == {examples[N - 1].row_id, examples[3].row_id}
    assert index.groups_read - before == 2  # the first group and the last, not the middle
    got = rows[examples[N - 1].row_id]
    ex = examples[N - 1]
    assert (got["chosen"], got["rejected"], got["extra"]) == (ex.chosen, ex.rejected, ex.extra)
    assert got["chosen_chars"] == len(ex.chosen)


def test_a_data_sets_index_opens_only_when_it_is_ready(tmp_path):
    from core.artifacts import ArtifactStore
    from core.row_index import key

    artifacts = ArtifactStore(str(tmp_path / "artifacts"))
    src = tmp_path / "d.jsonl"
    src.write_text("".join(json.dumps(r) + "\n" for r in _rows(10)))
    with artifacts.open_write(key("ds_a")) as fh:
        writer = RowIndexWriter(fh)
        for ex in PreferenceFile(src):
            writer.add(ex)
        writer.close()
    assert RowIndex.if_ready(artifacts, {"id": "ds_a", "status": "ready"}).rows == 10
    for ds in (None, {"id": "ds_a", "status": "validating"}, {"id": "ds_a", "status": "invalid"},
               {"id": "ds_b", "status": "ready"}):  # ds_b: validated before indexes
        assert RowIndex.if_ready(artifacts, ds) is None


def test_message_lists_come_back_as_turns(tmp_path):
    turns = [{"role": "user", "content": "hi"}]
    row = {"prompt": turns, "chosen": [{"role": "assistant", "content": "hello there"}],
           "rejected": [{"role": "assistant", "content": "go away"}]}
    src = tmp_path / "c.jsonl"
    src.write_text(json.dumps(row) + "\n")
    with open(tmp_path / "rows.parquet", "wb") as fh:
        writer = RowIndexWriter(fh)
        for ex in PreferenceFile(src):
            writer.add(ex)
        writer.close()
    got = RowIndex(tmp_path / "rows.parquet").page(0, 1)[0]
    assert got["conversational"] is True
    assert got["prompt"] == turns and got["chosen"][0]["content"] == "hello there"


def test_stats_count_every_row_and_tell_numbers_from_labels(indexed):
    _, examples, stats = indexed
    doc = stats.to_dict()
    assert doc["columns"] == ["prompt", "chosen", "rejected", "margin", "judge"]
    assert sum(doc["lengths"]["chosen_chars"]["counts"]) == N
    assert doc["lengths"]["rejected_chars"]["max"] == 2.0  # "no"
    margin = doc["numeric"]["margin"]
    assert sum(margin["counts"]) == N and margin["min"] == 0.0 and margin["max"] == 6.0
    assert "judge" not in doc["numeric"]  # strings get no histogram


def test_a_column_with_a_non_number_gets_no_histogram():
    stats = StatsCollector()
    from isa.ingest.records import Example

    for i, v in enumerate([1.0, 2.0, "n/a", 3.0]):
        stats.add(Example(row_id=str(i), row=i, line=i + 1, kind="pair", prompt="p",
                          chosen="a", rejected="b", extra={"score": v}))
    assert stats.to_dict()["numeric"] == {}


def test_histogram_edges_frame_the_counts():
    h = histogram(np.array([1.0, 2.0, 2.0, 10.0, np.nan]))
    assert len(h["edges"]) == len(h["counts"]) + 1 and sum(h["counts"]) == 4
    assert h["edges"][0] == 1.0 and h["edges"][-1] == 10.0
    log = histogram(np.array([0.0, 1.0, 3.0, 900.0]), log2=True)
    assert log["edges"][:4] == [0.0, 1.0, 2.0, 4.0] and log["edges"][-1] == 1024.0
    assert sum(log["counts"]) == 4
    assert histogram(np.array([np.nan])) is None
