"""The validation task's body, run in this process on the real Redis: its time budget,
counted at every record read, skipped ones too."""

from __future__ import annotations

from tests.conftest import write_jsonl
from tests.workers.conftest import add_dataset


def test_validation_past_its_time_budget_ends_invalid_and_says_where(worker_ctx, tmp_path,
                                                                     hh_rows, monkeypatch):
    rows = hh_rows * 10  # 1,200 rows, each read well within a millisecond
    path = write_jsonl(tmp_path / "pairs.jsonl", rows)
    assert add_dataset(worker_ctx, path)  # in budget: ready

    monkeypatch.setattr(worker_ctx.settings, "max_validation_s", 1e-6)
    late = add_dataset(worker_ctx, path, expect="invalid")
    record = worker_ctx.datasets.get(late)
    error = record["error"]
    assert error["code"] == "validation_time_exceeded"
    assert error["details"]["limit_s"] == 1e-6
    # stopped within a row of the budget, not after reading the whole file
    assert 0 <= error["details"]["rows_read"] < len(rows)
    assert error["message"].startswith("pairs.jsonl, line ")  # the upload's name, no path
    assert record["report"]["rows_read"] == error["details"]["rows_read"]


def test_the_budget_counts_rows_that_are_skipped(worker_ctx, tmp_path, hh_rows,
                                                 monkeypatch):
    # rows of another shape, skipped: no example comes out, the reading still stops
    path = write_jsonl(tmp_path / "odd.jsonl", [{"prompt": "p", "chosen": "c"}] * 2000
                       + hh_rows[:1])
    monkeypatch.setattr(worker_ctx.settings, "max_validation_s", 1e-6)
    late = add_dataset(worker_ctx, path, expect="invalid", shape="standard",
                       on_invalid="skip")
    error = worker_ctx.datasets.get(late)["error"]
    assert error["code"] == "validation_time_exceeded"
    assert error["details"]["rows_read"] < 2000
