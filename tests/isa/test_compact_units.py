"""The compact unit table (row ids in one Arrow array, sides and labels as int8 codes, no
Python object per unit) is exactly the table a plain list-based reading gives: the same
units in the same canonical order, the same columns, the same subset and scores, on the
real samples at both levels, read with and without texts and back from a unit file."""

from __future__ import annotations

import io
import json
import random

import numpy as np
import pyarrow.parquet as pq
import pytest

from isa import Budget, PreferenceFile, make_method
from isa.columns import CodeColumn, StrColumn
from isa.embed.base import text_key
from isa.embed.templates import unit_texts
from isa.export import score_columns, write_scores, write_subsets
from isa.ingest.records import render_text
from isa.pipeline import (
    SIDES,
    SelectionResult,
    default_export_shapes,
    read_units,
    score_units,
    select_units,
)
from isa.select.base import CHOSEN_CHARS, PROMPT_GROUP, REJECTED_CHARS
from isa.unit_files import read_unit_file, write_unit_file
from tests.conftest import ALPACA_SAMPLE, HH_SAMPLE, read_rows, write_jsonl

#: ids whose order differs between code points and a naive byte or case order
_ODD_IDS = ["Z", "a", "é", "e\u0301", "\U0001f600", "\uff21", "a b", "10", "9", ""]


def _rows(sample, n: int) -> list[dict]:
    rows = read_rows(sample, n)
    rng = random.Random(11)
    out = []
    for i, r in enumerate(rng.sample(rows, len(rows))):  # file order is not unit order
        r = dict(r, id=f"{_ODD_IDS[i % len(_ODD_IDS)]}{i}")  # ids are unique
        if i % 3:  # a numeric column some rows lack, a text column, a mixed one
            r["score"] = i * 0.5
        r["note"] = "n" if i % 2 else None
        r["mixed"] = 1 if i % 5 else "x"
        out.append(r)
    return out


def _reference(source: PreferenceFile, level: str, template: str) -> dict:
    """The table as plain lists, read the obvious way (one dict per unit), sorted by row
    id then side (Python orders str by code point: UTF-8 byte order)."""
    units, last_row = [], -1
    for ex in source.iter_examples():
        sides = [None] if level == "pair" else (
            ["chosen", "rejected"] if ex.kind == "pair" else ["completion"])
        if level == "item" and ex.row == last_row:
            sides = [s for s in sides if s != "chosen"]
        last_row = ex.row
        for side in sides:
            score = ex.extra.get("score")
            units.append({"row_id": ex.row_id, "side": side, "row": ex.row,
                          "items": unit_texts(ex, side, template),
                          "prompt": text_key(render_text(ex.prompt)),
                          "chars": (len(render_text(ex.chosen or "")),
                                    len(render_text(ex.rejected or ""))),
                          "score": np.nan if score is None else float(score)})
    units.sort(key=lambda u: (u["row_id"], SIDES.index(u["side"])))  # a stable sort
    prompts: dict[bytes, int] = {}
    return {
        "row_ids": [u["row_id"] for u in units], "sides": [u["side"] for u in units],
        "source_rows": [u["row"] for u in units],
        "groups": [i for i, u in enumerate(units) for _ in u["items"]],
        "text_labels": [label for u in units for label, _ in u["items"]],
        "texts": [text for u in units for _, text in u["items"]],
        "prompt_groups": [prompts.setdefault(u["prompt"], len(prompts)) for u in units],
        "chosen_chars": [u["chars"][0] for u in units],
        "rejected_chars": [u["chars"][1] for u in units],
        "score": [u["score"] for u in units],
    }


def _assert_table(table, ref: dict, *, texts: bool) -> None:
    assert isinstance(table.row_ids, StrColumn) and isinstance(table.sides, CodeColumn)
    assert list(table.row_ids) == ref["row_ids"]
    assert [table.row_ids[i] for i in range(len(table))] == ref["row_ids"]
    assert list(table.sides) == ref["sides"] and list(table.text_labels) == ref["text_labels"]
    assert table.source_rows.tolist() == ref["source_rows"]
    assert table.groups.tolist() == ref["groups"]
    assert [bytes(k) for k in table.text_keys] == [text_key(t) for t in ref["texts"]]
    assert table.texts == (ref["texts"] if texts else [])
    assert table.meta[PROMPT_GROUP].tolist() == ref["prompt_groups"]
    assert table.meta[CHOSEN_CHARS].tolist() == ref["chosen_chars"]
    assert table.meta[REJECTED_CHARS].tolist() == ref["rejected_chars"]
    np.testing.assert_array_equal(table.meta["score"], ref["score"])
    assert "note" not in table.meta and "mixed" not in table.meta


@pytest.fixture(scope="module", params=["hh", "alpaca"])
def data(request, tmp_path_factory):
    sample = HH_SAMPLE if request.param == "hh" else ALPACA_SAMPLE
    path = write_jsonl(tmp_path_factory.mktemp("compact") / "data.jsonl", _rows(sample, 300))
    return PreferenceFile(path, id_field="id")


@pytest.mark.parametrize("level", ["pair", "item"])
def test_compact_table_is_the_plain_reading(data, tmp_path, level):
    ref = _reference(data, level, "prompt_completion")
    assert any(not r.isascii() for r in ref["row_ids"])  # code point order matters
    full, _ = read_units(data, level=level)
    _assert_table(full, ref, texts=True)
    lean, report = read_units(data, level=level, keep_texts=False)
    _assert_table(lean, ref, texts=False)
    # the unit file, read from a stream and memory-mapped from a path
    path = tmp_path / "units.arrow"
    with path.open("wb") as fh:
        write_unit_file(lean, report, fh)
    for source in (io.BytesIO(path.read_bytes()), path):
        back, _ = read_unit_file(source)
        _assert_table(back, ref, texts=False)
        assert back.level == level


@pytest.mark.parametrize("level", ["pair", "item"])
def test_compact_table_gives_the_plain_subset_and_scores(data, tmp_path, monkeypatch, level):
    """ISA on embeddings made from the text keys: the subset and the scores file (written a
    few units at a time) are those the plain lists give."""
    import isa.export

    ref = _reference(data, level, "prompt_completion")
    units, report = read_units(data, level=level, keep_texts=False)
    X = units.text_keys[:, :6].astype(np.float32) / 255  # deterministic, content-keyed
    method = score_units(units, make_method("isa", random_state=0), X)
    budget = Budget(fraction=0.2)
    result = SelectionResult(units, method, budget, select_units(method, budget), report,
                             None, None, {})
    chosen = np.flatnonzero(result.selected)
    want = {(ref["row_ids"][i], ref["sides"][i]) for i in chosen}
    assert result.selected_keys() == want and len(want) == len(chosen)
    shape = default_export_shapes(units)[0]
    write_subsets(data, result, {tmp_path / "subset.jsonl": shape})
    got = [json.loads(line) for line in (tmp_path / "subset.jsonl").read_text().splitlines()]
    if shape == "input":
        rows = {r for r, _ in want}
        source = [json.loads(line) for line in data.path.read_text().splitlines()]
        assert got == [r for r in source if r["id"] in rows]
    else:
        assert sorted((r["row_id"], r["item"]) for r in got) == sorted(want)
    monkeypatch.setattr(isa.export, "_SCORE_BLOCK", 7)  # blocks that split no unit's items
    write_scores(result, tmp_path / "scores.parquet")
    write_scores(result, tmp_path / "scores.jsonl")
    table = pq.read_table(tmp_path / "scores.parquet")
    assert table.num_rows == len(units) and table.column("row_id").to_pylist() == \
        ref["row_ids"]
    if level == "item":
        assert table.column("item").to_pylist() == [s or "" for s in ref["sides"]]
    whole = {k: list(v) if not isinstance(v, np.ndarray) else v.tolist()
             for k, v in score_columns(result).items()}
    assert table.to_pydict().keys() == whole.keys()
    for name, values in table.to_pydict().items():
        np.testing.assert_array_equal(np.array(values, dtype=object),
                                      np.array(whole[name], dtype=object), err_msg=name)
    lines = [json.loads(line) for line in (tmp_path / "scores.jsonl").read_text().splitlines()]
    assert [r["row_id"] for r in lines] == ref["row_ids"]
    assert [r["rank"] for r in lines] == whole["rank"]


def test_item_order_of_units_with_varying_item_counts():
    """The general path (every table read today has the same number of items a unit)."""
    from isa.pipeline import _item_order

    rng = np.random.default_rng(0)
    per_unit = rng.integers(0, 4, 200).astype(np.uint8)
    order = rng.permutation(200)
    starts = np.concatenate([[0], np.cumsum(per_unit, dtype=np.int64)])
    want = [i for u in order for i in range(starts[u], starts[u + 1])]
    item_order, counts = _item_order(per_unit, order)
    assert item_order.tolist() == want and counts.tolist() == per_unit[order].tolist()
