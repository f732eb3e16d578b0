"""The typed job contract: one model per job type, the library's own rules for budgets
and alignment settings, a stored request parses back to the same model."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from core.contract import (
    AlignJob,
    CurveJob,
    EvaluateJob,
    SelectJob,
    check_methods,
    parse_job_request,
)
from isa import Budget, ConfigError
from isa.align import AlignConfig


@pytest.mark.parametrize("body, model", [
    ({"type": "select", "dataset_id": "d", "budget": {"fraction": 0.05}}, SelectJob),
    ({"type": "evaluate", "dataset_id": "d", "budget": {"count": 9}, "seeds": 3}, EvaluateJob),
    ({"type": "curve", "dataset_id": "d", "methods": [{"method": "random"}]}, CurveJob),
    ({"type": "align", "select_job_id": "j", "align": {"method": "kto"}}, AlignJob),
])
def test_each_type_parses_to_its_model_and_round_trips(body, model):
    request = parse_job_request(body)
    assert type(request) is model
    assert parse_job_request(request.model_dump()) == request


def test_budgets_and_alignment_settings_are_the_librarys_types():
    select = parse_job_request({"type": "select", "dataset_id": "d", "budget": {"count": 5}})
    assert select.budget == Budget(count=5) and select.budget.size(100) == 5
    align = parse_job_request({"type": "align", "dataset_id": "d", "align": {"beta": 0.2}})
    assert isinstance(align.align, AlignConfig) and align.align.beta == 0.2


@pytest.mark.parametrize("body, message", [
    # the budget rule is written once, in isa.Budget; pydantic reports its message
    ({"type": "select", "dataset_id": "d", "budget": {"fraction": 0.1, "count": 3}},
     "a budget is either a fraction or a count"),
    ({"type": "select", "dataset_id": "d", "budget": {"fraction": 1.5}}, "less than or equal"),
    ({"type": "select", "dataset_id": "d"}, "budget"),
    # fields of other job types are refused, not silently ignored
    ({"type": "select", "dataset_id": "d", "budget": {"count": 1}, "methods": []}, "methods"),
    ({"type": "align", "dataset_id": "d", "select_job_id": "j"}, "exactly one of"),
    ({"type": "align", "dataset_id": "d", "align": {"beta": -1}}, "greater than 0"),
    ({"type": "curve", "dataset_id": "d", "budgets_percent": [0, 5, 10]}, "greater than 0"),
    ({"type": "cluster", "dataset_id": "d"}, "does not match any of the expected tags"),
])
def test_invalid_requests_name_the_problem(body, message):
    with pytest.raises(ValidationError, match=message):
        parse_job_request(body)


def test_methods_and_their_parameters_come_from_the_registry():
    check_methods(parse_job_request({"type": "curve", "dataset_id": "d", "methods": [
        {"method": "isa", "params": {"covariance_type": "full"}}, {"method": "random"}]}))
    with pytest.raises(ConfigError) as exc:
        check_methods(parse_job_request({"type": "select", "dataset_id": "d", "method": "nope",
                                         "budget": {"count": 1}}))
    assert exc.value.code == "unknown_method"
    with pytest.raises(ConfigError) as exc:
        check_methods(parse_job_request({"type": "evaluate", "dataset_id": "d",
                                         "method": "isa", "params": {"colour": 1},
                                         "budget": {"count": 1}}))
    assert exc.value.code == "invalid_parameters"


def test_nulls_of_other_types_are_ignored_and_stored_requests_parse_leniently():
    # the earlier flat request sent every field, null where unused
    flat = {"type": "select", "dataset_id": "d", "budget": {"count": 2},
            "select_job_id": None, "eval_dataset_id": None, "methods": None}
    assert parse_job_request(flat).dataset_ids() == ["d"]
    with pytest.raises(ValidationError, match="eval_dataset_id"):
        parse_job_request({**flat, "eval_dataset_id": "e"})
    # a job queued before an upgrade carried fields this contract dropped: it still runs
    old = {"type": "align", "dataset_id": "d", "seed": 0, "encoder": {"name": "sentence"},
           "method": "isa", "budget": None}
    assert type(parse_job_request(old, stored=True)) is AlignJob
    with pytest.raises(ValidationError):
        parse_job_request(old)


def test_records_read_their_file_as_when_they_were_validated(tmp_path, alpaca_rows):
    """A record from before column_map changed direction, and one validated under
    another version's shape detection, still read the same rows."""
    from core.artifacts import ArtifactStore
    from core.contract import COLUMN_MAP_VERSION, open_dataset
    from core.settings import Settings
    from tests.conftest import write_jsonl

    store = ArtifactStore(str(tmp_path / "store"))
    rows = [{"question": r["prompt"], "good": r["chosen"], "bad": r["rejected"]}
            for r in alpaca_rows[:5]]
    store.put_file(write_jsonl(tmp_path / "a.jsonl", rows), "datasets/ds_a/upload.jsonl")
    old = {"artifact": "datasets/ds_a/upload.jsonl",
           "options": {"column_map": {"prompt": "question", "chosen": "good",
                                      "rejected": "bad"}}}
    new = {**old, "column_map_v": COLUMN_MAP_VERSION,
           "options": {"column_map": {"question": "prompt", "good": "chosen",
                                      "bad": "rejected"}}}
    for record in (old, new):
        ex = list(open_dataset(record, store, Settings()))
        assert [(e.prompt, e.chosen) for e in ex] == [(r["question"], r["good"]) for r in rows]
    # question/chosen/rejected strings are orca now; a record validated as implicit_prompt
    # keeps reading as that (its units, cache keys and export shape unchanged)
    raw = [{"question": r["prompt"], "chosen": f"A: {r['chosen']}",
            "rejected": f"A: {r['rejected']}"} for r in alpaca_rows[:5]]
    store.put_file(write_jsonl(tmp_path / "b.jsonl", raw), "datasets/ds_b/upload.jsonl")
    record = {"artifact": "datasets/ds_b/upload.jsonl", "options": {}}
    data = open_dataset(record, store, Settings())
    list(data)
    assert data.report.shape == "orca"
    data = open_dataset({**record, "shape": "implicit_prompt"}, store, Settings())
    list(data)
    assert data.report.shape == "implicit_prompt"
