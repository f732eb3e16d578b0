"""SeenIds, the reader's compact record of ids met so far (isa.ingest.seen_ids), and the
reader's duplicate checks across the table's growth."""

from __future__ import annotations

import random

import pytest

from isa import PreferenceFile
from isa.errors import IngestError
from isa.ingest.seen_ids import SeenIds
from tests.conftest import write_jsonl


def test_it_answers_as_a_dict_does_while_it_grows():
    """Ids drawn from a small range, so many come back, through 8 doublings: every
    answer is a dict's, and a table holds 16 bytes a slot at most 70% full."""
    rng = random.Random(7)
    first, counted = SeenIds(capacity=4), SeenIds(capacity=4)
    plain: dict[str, int] = {}
    counts: dict[str, int] = {}
    for row in range(3000):
        row_id = f"id-{rng.randrange(1500)}"
        assert first.first_row(row_id, row) == plain.get(row_id)
        plain.setdefault(row_id, row)
        counts[row_id] = counts.get(row_id, 0) + 1
        assert counted.occurrence(row_id) == counts[row_id]
    assert len(first) == len(counted) == len(plain)
    assert first.nbytes == 16 * 2048 and len(plain) <= 0.7 * 2048
    assert first.first_row("never seen", 1) is None and first.first_row("never seen", 2) == 1


def test_a_hash_of_zero_and_colliding_slots():
    """Ids whose hashes land in one slot probe on; an id hashing to 0 (the empty mark)
    is stored as 1 and still told apart from the others."""

    class Hashed(str):
        def __hash__(self) -> int:
            return int(self.split(":")[1])

    seen = SeenIds(capacity=16)
    ids = [Hashed(f"a:{h}") for h in (0, 16, 32, -16, 5, 21)]  # all but 5, 21: slot 0
    assert [seen.first_row(i, row) for row, i in enumerate(ids)] == [None] * 6
    assert [seen.first_row(i, 99) for i in ids] == [0, 1, 2, 3, 4, 5]


def _row(i: int, **extra) -> dict:
    return {"prompt": f"question {i}", "chosen": "yes", "rejected": "no", **extra}


def test_the_reader_names_the_first_row_of_a_duplicate_id(tmp_path, monkeypatch):
    from isa.ingest import dataset

    monkeypatch.setattr(dataset, "SeenIds", lambda: SeenIds(capacity=2))  # it grows
    rows = [_row(i, id=f"r{i}") for i in range(40)] + [_row(99, id="r4")]
    data = PreferenceFile(write_jsonl(tmp_path / "d.jsonl", rows), id_field="id")
    with pytest.raises(IngestError) as err:
        list(data)
    assert err.value.code == "duplicate_id"
    assert "already used by row 4" in str(err.value)


def test_exact_duplicate_rows_are_numbered_in_file_order(tmp_path, monkeypatch):
    from isa.ingest import dataset

    monkeypatch.setattr(dataset, "SeenIds", lambda: SeenIds(capacity=2))
    rows = [_row(0), _row(1), _row(0), _row(2), _row(3), _row(0), _row(1)]
    rows += [_row(i) for i in range(10, 40)]
    ids = [e.row_id for e in PreferenceFile(write_jsonl(tmp_path / "d.jsonl", rows))]
    assert ids[2] == f"{ids[0]}-2" and ids[5] == f"{ids[0]}-3" and ids[6] == f"{ids[1]}-2"
    assert len(set(ids)) == len(ids) and "-" not in ids[3] + ids[4] + "".join(ids[7:])
