"""SeenIds, the reader's compact record of ids met so far (isa.ingest.seen_ids), and the
reader's duplicate checks across its merges."""

from __future__ import annotations

import random

import pytest

from isa import PreferenceFile
from isa.errors import IngestError
from isa.ingest.seen_ids import SeenIds, id_key
from tests.conftest import write_jsonl


def test_it_answers_as_a_dict_does_across_merges():
    rng = random.Random(7)
    seen, plain = SeenIds(merge_every=5), {}
    counts: dict[int, int] = {}
    for row in range(400):  # ids drawn from a small range: many come back
        key = rng.randrange(150) * 0x9E3779B97F4A7C15 % (1 << 64)
        assert seen.first_row(key) == plain.get(key)
        counts[key] = counts.get(key, 0) + 1
        assert seen.occurrence(key, row) == counts[key]
        plain.setdefault(key, row)
    assert len(seen) == len(plain)
    assert seen.first_row(12345) is None


def test_keys_near_the_ends_of_64_bits():
    seen = SeenIds(merge_every=2)
    for row, key in enumerate([0, (1 << 64) - 1, 1 << 63, 1]):
        seen.add(key, row)
    assert [seen.first_row(k) for k in (0, (1 << 64) - 1, 1 << 63, 1, 2)] == [0, 1, 2, 3, None]
    assert id_key("a") != id_key("b") and 0 <= id_key("a") < 1 << 64


def _row(i: int, **extra) -> dict:
    return {"prompt": f"question {i}", "chosen": "yes", "rejected": "no", **extra}


def test_the_reader_names_the_first_row_of_a_duplicate_id(tmp_path, monkeypatch):
    from isa.ingest import dataset

    monkeypatch.setattr(dataset, "SeenIds", lambda: SeenIds(merge_every=3))  # merges happen
    rows = [_row(i, id=f"r{i}") for i in range(10)] + [_row(99, id="r4")]
    data = PreferenceFile(write_jsonl(tmp_path / "d.jsonl", rows), id_field="id")
    with pytest.raises(IngestError) as err:
        list(data)
    assert err.value.code == "duplicate_id"
    assert "already used by row 4" in str(err.value)


def test_exact_duplicate_rows_are_numbered_in_file_order(tmp_path, monkeypatch):
    from isa.ingest import dataset

    monkeypatch.setattr(dataset, "SeenIds", lambda: SeenIds(merge_every=2))
    rows = [_row(0), _row(1), _row(0), _row(2), _row(3), _row(0), _row(1)]
    ids = [e.row_id for e in PreferenceFile(write_jsonl(tmp_path / "d.jsonl", rows))]
    assert ids[2] == f"{ids[0]}-2" and ids[5] == f"{ids[0]}-3" and ids[6] == f"{ids[1]}-2"
    assert len(set(ids)) == len(ids) and "-" not in ids[3] + ids[4]
