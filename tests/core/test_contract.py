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
