"""The data set page's job forms as the API's job requests (app.ui.forms): what each
form's strings become, that blanks leave the API's defaults, and that what the contract
refuses comes back as its own message; the page keeps a failed form's values."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from app.ui import forms
from app.ui.forms import FormError, job_request, read_form, request_dict, validation_message
from isa.errors import ConfigError
from isa.remote.contract import AlignJob, CurveJob, EvaluateJob, SelectJob


def _refused(kind: str, form: dict[str, str]) -> str:
    with pytest.raises(ValidationError) as exc:
        job_request(kind, "ds_1", form)
    return validation_message(exc.value)


def test_read_form_keeps_the_forms_own_inputs_trimmed_and_bounded():
    kind, form = read_form({"method": " random ", "budget": "5%", "bogus": "x",
                            "params": "a=1\n" * 2000, "seed": "9" * 1000})
    assert kind == "select"  # a form posted without a type: the select form's
    assert set(form) == set(forms.FIELDS["select"]) and "bogus" not in form
    assert form["method"] == "random" and form["level"] == ""
    assert len(form["params"]) == forms.LONG_CHARS and len(form["seed"]) == forms.SHORT_CHARS
    kind, form = read_form({"type": "curve", "budgets_percent": "1,2,3", "budget": "5%"})
    assert kind == "curve" and "budget" not in form and form["budgets_percent"] == "1,2,3"
    with pytest.raises(FormError, match="unknown job type 'nope'"):
        read_form({"type": "nope"})


def test_a_select_form_as_the_request():
    job = job_request("select", "ds_1", {
        "method": "isa", "budget": "5%", "level": "pair", "template": "completion",
        "seed": "7", "encoder_name": "static", "encoder_model": "all-MiniLM-L6-v2",
        "max_seq_length": "128", "queue": "cpu", "metadata": "team=vision\n\nrun = 3",
        "params": "n_components=3\ncovariance_type=full\ntol=1e-4\npca_components=null"})
    assert isinstance(job, SelectJob) and job.dataset_id == "ds_1"
    assert job.budget.fraction == 0.05 and (job.level, job.template) == ("pair", "completion")
    assert job.seed == 7 and job.queue == "cpu" and job.metadata == {"team": "vision",
                                                                    "run": "3"}
    assert (job.encoder.name, job.encoder.model, job.encoder.max_seq_length) == (
        "static", "all-MiniLM-L6-v2", 128)
    # values typed as the registry types each parameter: JSON, or text for a string one
    assert job.params == {"n_components": 3, "covariance_type": "full", "tol": 1e-4,
                          "pca_components": None}
    assert forms.params("margin", "column=123") == {"column": "123"}  # str | None
    assert forms.params("isa", "n_components=3") == {"n_components": 3}
    # blank inputs are left out: the contract's defaults
    plain = request_dict("select", "ds_1", {"method": "random", "budget": "40",
                                            "seed": "", "level": "", "max_seq_length": ""})
    assert plain == {"type": "select", "dataset_id": "ds_1", "method": "random",
                     "params": {}, "budget": {"count": 40}}
    job = job_request("select", "ds_1", {"method": "random", "budget": "40"})
    assert job.seed == 0 and job.level == "auto" and job.encoder.name == "sentence"


def test_evaluate_and_curve_forms_as_requests():
    job = job_request("evaluate", "ds_1", {
        "method": "margin", "budget": "25%", "eval_dataset_id": "ds_2",
        "eval_fraction": "0.3", "seeds": "2", "params": "order=low"})
    assert isinstance(job, EvaluateJob) and job.budget.fraction == 0.25
    assert (job.eval_dataset_id, job.eval_fraction, job.seeds) == ("ds_2", 0.3, 2)
    assert job.params == {"order": "low"}
    job = job_request("curve", "ds_1", {
        "methods": "isa n_components=3 tol=0.01\n\nrandom\n"
                   "length_balanced base=isa base_params='{\"n_components\": 2}'",
        "budgets_percent": "5, 10%,  50 100", "share": "0.9", "metric": "accuracy",
        "seeds": "3"})
    assert isinstance(job, CurveJob) and job.budgets_percent == [5, 10, 50, 100]
    assert [(m.method, m.params) for m in job.methods] == [
        ("isa", {"n_components": 3, "tol": 0.01}), ("random", {}),
        ("length_balanced", {"base": "isa", "base_params": {"n_components": 2}})]
    assert (job.share, job.metric, job.seeds) == (0.9, "accuracy", 3)
    # left blank: the contract's grid and methods, which the inputs show as placeholders
    job = job_request("curve", "ds_1", {"methods": "", "budgets_percent": ""})
    assert job.budgets_percent == [1, 2, 3.5, 5, 10, 25, 50, 100]
    assert [m.method for m in job.methods] == ["isa", "random"]
    holders = forms.placeholders()
    assert holders["budgets_percent"] == "1, 2, 3.5, 5, 10, 25, 50, 100"
    assert holders["methods"] == "isa\nrandom" and holders["eval_fraction"] == "0.2"


def test_an_align_form_as_the_request():
    job = job_request("align", "ds_1", {
        "method": "kto", "beta": "0.2", "seed": "5", "lora": "no", "max_steps": "10",
        "target_modules": "q_proj, v_proj", "eval_dataset_id": "ds_9", "queue": "cpu"})
    assert isinstance(job, AlignJob) and job.dataset_id == "ds_1" and job.select_job_id is None
    a = job.align
    assert (a.method, a.beta, a.seed, a.lora, a.max_steps) == ("kto", 0.2, 5, False, 10)
    assert a.target_modules == ["q_proj", "v_proj"] and job.eval_dataset_id == "ds_9"
    assert a.batch_size == 4  # blank: AlignConfig's default
    # on a select job's subset instead of the whole data set
    job = job_request("align", "ds_1", {"select_job_id": "job_7", "lora": "yes"})
    assert (job.dataset_id, job.select_job_id, job.align.lora) == (None, "job_7", True)


def test_what_the_contract_refuses_is_its_own_message():
    assert _refused("evaluate", {"method": "random"}) == "budget: Field required"
    assert _refused("curve", {"budgets_percent": "5, 10"}).startswith(
        "budgets_percent: List should have at least 3 items")
    assert "budgets_percent.1: Input should be a valid number" in _refused(
        "curve", {"budgets_percent": "5, lots, 10"})
    assert "budgets_percent.2: Input should be less than or equal to 100" in _refused(
        "curve", {"budgets_percent": "5, 10, 150"})
    assert _refused("align", {"beta": "0"}) == "align.beta: Input should be greater than 0"
    assert _refused("select", {"method": "random", "budget": "5%", "seed": "x"}).startswith(
        "seed: Input should be a valid integer")
    assert _refused("select", {"method": "random", "budget": "5%", "max_seq_length": "4"}
                    ) == "encoder.max_seq_length: Input should be greater than or equal to 8"
    assert "eval_fraction: Input should be less than 1" in _refused(
        "evaluate", {"method": "random", "budget": "5%", "eval_fraction": "1.5"})
    with pytest.raises(ConfigError, match="cannot read budget"):
        job_request("select", "ds_1", {"budget": "lots"})
    with pytest.raises(FormError, match=r"metadata: line 2 \('oops'\) is not name=value"):
        job_request("select", "ds_1", {"budget": "5%", "metadata": "a=1\noops"})
    with pytest.raises(FormError, match="isa parameters: line 1"):
        job_request("select", "ds_1", {"method": "isa", "budget": "5%", "params": "=3"})
    with pytest.raises(FormError, match="methods: line 2: No closing quotation"):
        job_request("curve", "ds_1", {"methods": "isa\nrandom base_params='{"})


def test_the_page_keeps_a_failed_forms_values_and_opens_it():
    from app.ui.render import html_page, job_view

    ds = {"id": "ds_x", "status": "ready", "filename": "a.jsonl", "size_bytes": 1,
          "sha256": "ab", "options": {}, "created_at": 0.0}
    values = {k: dict(forms.INITIAL.get(k, {})) for k in forms.JOB_FORMS}
    values["curve"] = {"methods": "isa\n<b>x</b>", "budgets_percent": "5, 10",
                       "metric": "accuracy"}
    select_job = job_view({"id": "job_s", "type": "select", "status": "succeeded",
                           "created_at": 0.0, "request": {
                               "dataset_id": "ds_x", "method": "random",
                               "budget": {"count": 5}}})
    html = html_page("dataset.html", 422, tenant="t", ds=ds, jobs=[select_job],
                     refresh=None, methods=forms.methods(), error="budgets_percent: <too few>",
                     form_kind="curve", forms=values, choices=forms.CHOICES,
                     placeholders=forms.placeholders(), align_fields=forms.ALIGN_FIELDS
                     ).body.decode()
    assert '<details id="form-curve" open>' in html
    assert '<details id="form-select">' in html  # closed while another form failed
    assert 'id="job-error">budgets_percent: &lt;too few&gt;</p>' in html
    assert "isa\n&lt;b&gt;x&lt;/b&gt;</textarea>" in html and 'value="5, 10"' in html
    assert '<option value="accuracy" selected>' in html
    # each form posts its type; the select form keeps the ids it always had
    for kind in forms.JOB_FORMS:
        assert f'<input type="hidden" name="type" value="{kind}">' in html
    assert 'id="job-budget"' in html and 'id="start-job"' in html
    assert 'id="evaluate-budget"' in html and 'id="start-curve"' in html
    # the align form offers this data set's finished select job as its source
    assert '<option value="job_s">the subset of job_s (random, 5 rows)</option>' in html
    assert '<details id="method-params">' in html and "<code>n_components</code>" in html
