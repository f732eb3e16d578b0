"""The data set page's job forms and the front page's name search, in a real Chromium
against the real service (as tests/service/test_dashboard.py): an evaluate and a curve
job started from their forms run to their job pages; a refused form answers the API's
status and message and keeps what was entered; a search by part of a file name lists
those data sets only. And ``GET /v1/datasets?filename=`` with the status filter and
cursor pages, through the API, the client and ``isa remote datasets``."""

from __future__ import annotations

import re
import uuid

from tests.conftest import ALPACA_SAMPLE, read_rows, write_jsonl
from tests.service import test_dashboard as dashboard
from tests.service.test_remote_cli import _isa

# the browser tests' fixtures (the system's Chromium) and login
browser, expect, _login = dashboard.browser, dashboard.expect, dashboard._login


def _submit(page, button: str):
    """Click a job form's button; the answer to its POST (the page shows what it says)."""
    with page.expect_response(lambda r: r.request.method == "POST"
                              and r.url.endswith("/jobs"), timeout=60_000) as answer:
        page.click(button)
    return answer.value


def _started(page, expect, button: str, title: str) -> str:
    """Start the job of a filled form: its id, once its page (where the form leads) says it
    succeeded."""
    assert _submit(page, button).status == 303
    expect(page).to_have_url(re.compile(r"/ui/jobs/job_[0-9a-f]+$"))
    job_id = page.url.rsplit("/", 1)[1]
    expect(page.locator("h1")).to_contain_text(title)
    expect(page.locator("#status")).to_have_text("succeeded", timeout=300_000)
    return job_id


def test_evaluate_and_curve_jobs_start_from_the_data_set_page(service, browser, expect,
                                                              tmp_path):
    path = write_jsonl(tmp_path / "forms-pool.jsonl", read_rows(ALPACA_SAMPLE, 200))
    with service.client("key-a") as api:
        ds = service.wait_dataset(api, service.upload(api, path)["id"], timeout=180)
        assert ds["status"] == "ready", ds
    context = browser.new_context(base_url=service.base_url,
                                  viewport={"width": 1280, "height": 900})
    try:
        page = _login(context, "key-a")
        page.goto(f"/ui/datasets/{ds['id']}")
        # the select form is open; the others open on a click (no script on these pages)
        expect(page.locator("#job-budget")).to_be_visible()
        expect(page.locator("#evaluate-budget")).to_be_hidden()
        page.click("#form-evaluate summary")
        page.select_option("#evaluate-method", "random")
        page.fill("#evaluate-budget", "50%")
        page.fill("#evaluate-eval-fraction", "0.25")
        page.select_option("#evaluate-encoder-name", "static")
        page.fill("#evaluate-metadata", "form=evaluate")
        evaluate_id = _started(page, expect, "#start-evaluate", "Evaluate job")

        page.goto(f"/ui/datasets/{ds['id']}")
        page.click("#form-curve summary")
        page.fill("#curve-methods", "random\nisa n_components=1")
        page.fill("#curve-budgets-percent", "10, 50, 100")
        page.fill("#curve-seeds", "1")
        page.select_option("#curve-metric", "accuracy")
        page.select_option("#curve-encoder-name", "static")
        curve_id = _started(page, expect, "#start-curve", "Curve job")

        # both are the API's jobs, with what the forms said
        with service.client("key-a") as api:
            job = api.get(f"/v1/jobs/{evaluate_id}").json()
            assert job["type"] == "evaluate" and job["status"] == "succeeded"
            req = job["request"]
            assert (req["dataset_id"], req["method"], req["budget"]["fraction"]) == (
                ds["id"], "random", 0.5)
            assert req["eval_fraction"] == 0.25 and req["encoder"]["name"] == "static"
            assert job["metadata"] == {"form": "evaluate"}
            job = api.get(f"/v1/jobs/{curve_id}").json()
            assert job["type"] == "curve" and job["status"] == "succeeded"
            req = job["request"]
            assert req["budgets_percent"] == [10, 50, 100] and req["seeds"] == 1
            assert [(m["method"], m["params"]) for m in req["methods"]] == [
                ("random", {}), ("isa", {"n_components": 1})]
            assert job["result"]["metric"] == "accuracy"
        # and the data set page lists them
        page.goto(f"/ui/datasets/{ds['id']}")
        expect(page.locator("#jobs")).to_contain_text(evaluate_id)
        expect(page.locator("#jobs")).to_contain_text(curve_id)
    finally:
        context.close()


def test_a_refused_form_shows_the_apis_answer_and_keeps_its_values(service, browser,
                                                                   expect, tmp_path):
    path = write_jsonl(tmp_path / "forms-bad.jsonl", read_rows(ALPACA_SAMPLE, 40))
    with service.client("key-a") as api:
        ds = service.wait_dataset(api, service.upload(api, path)["id"], timeout=180)
        assert ds["status"] == "ready", ds
        # what the API itself answers the same request
        api_says = api.post("/v1/jobs", json={
            "type": "curve", "dataset_id": ds["id"], "budgets_percent": [5, 10],
            "methods": [{"method": "random"}]}).json()["error"]["details"]["errors"][0]
        isa_says = api.post("/v1/jobs", json={
            "type": "evaluate", "dataset_id": ds["id"], "method": "isa",
            "params": {"n_components": 0}, "budget": {"fraction": 0.5}}).json()["error"]
        jobs_before = api.get("/v1/jobs", params={"limit": 1}).json()["count"]
    context = browser.new_context(base_url=service.base_url)
    try:
        page = _login(context, "key-a")
        page.goto(f"/ui/datasets/{ds['id']}")
        page.click("#form-curve summary")
        page.fill("#curve-methods", "random")
        page.fill("#curve-budgets-percent", "5, 10")
        page.fill("#curve-share", "0.8")
        page.select_option("#curve-metric", "balanced_accuracy")
        assert _submit(page, "#start-curve").status == 422
        # the API's message at the field it names, above the form it came from, open
        error = page.locator("#form-curve #job-error")
        expect(error).to_contain_text(f"budgets_percent: {api_says['message']}")
        assert api_says["field"] == "body.budgets_percent"
        expect(page.locator("#form-curve")).to_have_attribute("open", "")
        expect(page.locator("#curve-budgets-percent")).to_have_value("5, 10")
        expect(page.locator("#curve-methods")).to_have_value("random")
        expect(page.locator("#curve-share")).to_have_value("0.8")
        expect(page.locator("#curve-metric")).to_have_value("balanced_accuracy")
        expect(page.locator("#form-select")).not_to_have_attribute("open", "")

        # a parameter the method's registry refuses: its 422 and message, as the API's
        page.click("#form-evaluate summary")
        page.select_option("#evaluate-method", "isa")
        page.fill("#evaluate-params", "n_components=0")
        page.fill("#evaluate-budget", "50%")
        assert _submit(page, "#start-evaluate").status == 422
        expect(page.locator("#form-evaluate #job-error")).to_have_text(isa_says["message"])
        expect(page.locator("#evaluate-params")).to_have_value("n_components=0")
        expect(page.locator("#evaluate-method")).to_have_value("isa")
        expect(page.locator("#form-curve #job-error")).to_have_count(0)

        # an answer other than 422 keeps its status: a held-out data set that is not there
        page.fill("#evaluate-params", "")
        page.fill("#evaluate-eval-dataset-id", "ds_0000")
        assert _submit(page, "#start-evaluate").status == 404
        expect(page.locator("#job-error")).to_have_text("no dataset 'ds_0000'")
        expect(page.locator("#evaluate-eval-dataset-id")).to_have_value("ds_0000")

        # a line the form cannot read: 422, said in the form's terms
        page.fill("#evaluate-eval-dataset-id", "")
        page.fill("#evaluate-metadata", "team vision")
        assert _submit(page, "#start-evaluate").status == 422
        expect(page.locator("#job-error")).to_contain_text("metadata: line 1")
        with service.client("key-a") as api:  # none of these made a job
            assert api.get("/v1/jobs", params={"limit": 1}).json()["count"] == jobs_before
    finally:
        context.close()


def test_the_front_page_searches_data_sets_by_part_of_their_name(service, browser,
                                                                expect, tmp_path):
    tok = uuid.uuid4().hex[:8]
    rows = read_rows(ALPACA_SAMPLE, 5)
    with service.client("key-b") as api:
        made = {}
        for name in (f"Zebra-{tok}-one.jsonl", f"zebra-{tok}-two.jsonl",
                     f"lion-{tok}.jsonl"):
            ds = service.upload(api, write_jsonl(tmp_path / name, rows))
            made[name] = service.wait_dataset(api, ds["id"])["id"]
    zebras = [made[f"Zebra-{tok}-one.jsonl"], made[f"zebra-{tok}-two.jsonl"]]
    lion = made[f"lion-{tok}.jsonl"]
    context = browser.new_context(base_url=service.base_url)
    try:
        page = _login(context, "key-b")
        expect(page.locator("#datasets")).to_contain_text(lion)
        page.fill("#ds-filename", f"ZEBRA-{tok}")  # any case, a part of the name
        page.click("#ds-filter")
        expect(page).to_have_url(re.compile(rf"ds_filename=ZEBRA-{tok}"))
        listed = page.locator("#datasets td.mono").all_inner_texts()
        assert listed == zebras[::-1]  # newest first, the lion hidden
        expect(page.locator("#datasets")).not_to_contain_text(lion)
        expect(page.locator("#ds-filename")).to_have_value(f"ZEBRA-{tok}")
        # with a status too; the jobs' filter keeps the search as it is
        page.select_option("#ds-status", "invalid")
        page.click("#ds-filter")
        expect(page.locator("body")).to_contain_text("None here.")
        assert page.locator("#jobs-filter input[name=ds_filename]").get_attribute(
            "value") == f"ZEBRA-{tok}"
        page.select_option("#ds-status", "ready")
        page.fill("#ds-filename", f"{tok}-TWO")
        page.click("#ds-filter")
        assert page.locator("#datasets td.mono").all_inner_texts() == [zebras[1]]
        # an emptied search box lists every data set again
        page.fill("#ds-filename", "")
        page.select_option("#ds-status", "")
        page.click("#ds-filter")
        expect(page.locator("#datasets")).to_contain_text(lion)
    finally:
        context.close()


def test_the_api_lists_data_sets_by_part_of_their_name(service, tmp_path):
    tok = uuid.uuid4().hex[:8]
    c = service.client("key-b")
    good = read_rows(ALPACA_SAMPLE, 3)
    bad = tmp_path / f"{tok.upper()}-bad.jsonl"
    bad.write_text('{"prompt": "no answers"}\n')
    ids = []
    for i in range(5):
        ds = service.upload(c, write_jsonl(tmp_path / f"run-{tok}-{i}.jsonl", good))
        ids.append(service.wait_dataset(c, ds["id"])["id"])
    invalid = service.wait_dataset(c, service.upload(c, bad)["id"])
    assert invalid["status"] == "invalid"
    service.upload(c, write_jsonl(tmp_path / "unrelated.jsonl", good))

    everything = c.get("/v1/datasets", params={"filename": tok, "limit": 500}).json()
    assert everything["count"] == 6 and everything["next_after"] is None
    assert [d["id"] for d in everything["data"]] == [invalid["id"], *ids[::-1]]
    # with the status filter, and paged by cursor: each once, newest first
    paged, after = [], None
    while True:
        page = c.get("/v1/datasets", params={"filename": f"RUN-{tok}", "status": "ready",
                                             "limit": 2, **({"after": after} if after else {})
                                             }).json()
        assert page["count"] == 5 and len(page["data"]) <= 2
        assert page["has_more"] is (page["next_after"] is not None)
        paged += [d["id"] for d in page["data"]]
        if (after := page["next_after"]) is None:
            break
    assert paged == ids[::-1]
    page = c.get("/v1/datasets", params={"filename": tok, "status": "invalid"}).json()
    assert [d["id"] for d in page["data"]] == [invalid["id"]] and page["count"] == 1
    page = c.get("/v1/datasets", params={"filename": tok, "offset": 4, "limit": 1}).json()
    assert [d["id"] for d in page["data"]] == [ids[1]]
    # another tenant finds none of them
    with service.client("key-a") as other:
        assert other.get("/v1/datasets", params={"filename": tok}).json()["count"] == 0
    # an empty part, and a part with a metadata filter, are refused
    r = c.get("/v1/datasets", params={"filename": ""})
    assert r.status_code == 422 and r.json()["error"]["code"] == "validation_error"
    r = c.get("/v1/datasets", params={"filename": tok, "metadata": "a:b"})
    assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_filter"
    # the parameter is declared and documented, so it is no unknown_parameter
    spec = c.get("/openapi.json").json()["paths"]["/v1/datasets"]["get"]
    param = next(p for p in spec["parameters"] if p["name"] == "filename")
    assert param["in"] == "query" and "part of the file name" in param["description"]

    # the client and the CLI take it too
    from isa.remote import Client

    with Client(service.base_url, api_key="key-b") as client:
        assert [d.id for d in client.datasets(filename=f"run-{tok}", status="ready",
                                              page_size=2)] == ids[::-1]
    out = _isa(service, "datasets", "--filename", tok.upper(), "--status", "ready")
    assert out.returncode == 0, out.stderr
    assert [line.split()[0] for line in out.stdout.splitlines()] == ids[::-1]
