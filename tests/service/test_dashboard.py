"""The browser dashboard at /ui, driven in a real headless Chromium (Playwright pointed at
the system's chromium, e.g. Debian's package) against the real service: log in, upload,
watch the data set validate, start a select job, see it finish on its own, browse the
subset; and the tenant walls, the login redirect and the refusal of cross-site forms."""

from __future__ import annotations

import io
import os
import re
import shutil
from collections.abc import Iterator

import httpx
import pytest

from tests.conftest import HH_SAMPLE, ROOT

SCREENSHOT = ROOT / "bench" / "results" / "dashboard.png"
CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


def _chromium() -> str:
    for name in CHROMIUM_NAMES:
        if path := shutil.which(name):
            return path
    pytest.skip("no Chromium found (looked for " + ", ".join(CHROMIUM_NAMES) + "); install "
                "it with `apt-get install -y chromium chromium-driver` (.ci/run does)")


@pytest.fixture(scope="module")
def browser() -> Iterator:
    executable = _chromium()
    sync_api = pytest.importorskip(
        "playwright.sync_api", reason="the playwright package is missing: pip install "
        "-e '.[dev]' (its browsers are not needed: the system's Chromium is used)")
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=executable, headless=True,
                              args=["--no-sandbox", "--disable-dev-shm-usage"])
        try:
            yield b
        finally:
            b.close()


@pytest.fixture
def expect():
    from playwright.sync_api import expect as _expect

    _expect.set_options(timeout=30_000)
    return _expect


def _login(context, key: str):
    page = context.new_page()
    page.goto("/ui/login")
    page.fill("#api_key", key)
    page.click("#login")
    return page


def test_upload_select_and_browse_the_subset_in_a_browser(service, browser, expect,
                                                          tmp_path):
    context = browser.new_context(base_url=service.base_url,
                                  viewport={"width": 1280, "height": 900})
    try:
        page = context.new_page()
        # no session yet: the dashboard sends the browser to the login form
        page.goto("/ui")
        expect(page).to_have_url(re.compile(r"/ui/login\?next=/ui$"))
        page.fill("#api_key", "key-a")
        page.click("#login")
        expect(page).to_have_url(re.compile(r"/ui$"))
        expect(page.locator("#tenant")).to_have_text("tenant-a")
        (cookie,) = context.cookies()
        assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"
        assert "key-a" not in cookie["value"]  # a session token, not the API key

        # upload through the form; the data set page reloads itself until validated
        page.set_input_files("#upload-file", str(HH_SAMPLE))
        page.click("#upload")
        expect(page).to_have_url(re.compile(r"/ui/datasets/ds_[0-9a-f]+$"))
        dataset_id = page.url.rsplit("/", 1)[1]
        expect(page.locator("#status")).to_have_text("ready", timeout=180_000)
        expect(page.locator("#rows")).to_have_text("600")
        expect(page.locator("#report")).to_contain_text("Rows valid")

        # start a select job from the data set page
        page.select_option("#job-method", "random")
        page.fill("#job-budget", "5%")
        page.fill("#job-max-seq", "128")
        page.click("#start-job")
        expect(page).to_have_url(re.compile(r"/ui/jobs/job_[0-9a-f]+$"))
        job_id = page.url.rsplit("/", 1)[1]
        # nothing here reloads the page: it refreshes itself while the job runs
        expect(page.locator("#status")).to_have_text("succeeded", timeout=300_000)
        expect(page.locator("#result")).to_contain_text("rows_selected")
        # its events, oldest first: running first, succeeded last, as the API lists them
        events = page.locator("#events-table tbody tr")
        expect(events.first).to_contain_text("running")
        expect(events.last).to_contain_text("succeeded")
        with service.client("key-a") as api:
            listed = api.get(f"/v1/jobs/{job_id}/events", params={"limit": 1000}).json()
        expect(events).to_have_count(len(listed["data"]))

        # the subset review: the 30 kept rows (5% of 600) by rank, prompt above, the two
        # answers side by side
        units = page.locator("#subset-units .unit")
        expect(units).to_have_count(30)
        ranks = page.locator("#subset-units .rank").all_inner_texts()
        assert [int(r) for r in ranks] == list(range(1, 31))
        row_ids = page.locator("#subset-units .row-id").all_inner_texts()
        expect(units.first.locator(".prompt")).to_contain_text("Prompt")
        expect(units.first.locator(".pair .answer.chosen")).to_contain_text("Chosen")
        expect(units.first.locator(".pair .answer.rejected")).to_contain_text("Rejected")

        # the same job and rows as the API has, created through the API's rules
        with service.client("key-a") as api:
            job = api.get(f"/v1/jobs/{job_id}").json()
            assert job["status"] == "succeeded"
            assert job["request"]["dataset_id"] == dataset_id
            assert job["request"]["method"] == "random"
            assert job["request"]["budget"] == {"fraction": 0.05, "count": None}
            assert job["request"]["encoder"]["max_seq_length"] == 128
            import pyarrow.parquet as pq

            scores = pq.read_table(io.BytesIO(api.get(f"/v1/jobs/{job_id}/scores").content))
            kept = sorted((r["rank"], r["row_id"]) for r in scores.to_pylist()
                          if r["selected"])
            assert [rid for _, rid in kept] == row_ids

        # the scores download works through the dashboard's own route
        with page.expect_download() as download:
            page.click(f"a[href='/ui/jobs/{job_id}/files/scores']")
        assert download.value.suggested_filename == f"{job_id}-scores.parquet"

        # and the front page lists both, newest first
        page.goto("/ui")
        expect(page.locator("#datasets")).to_contain_text(dataset_id)
        expect(page.locator("#jobs tbody tr").first).to_contain_text(job_id)

        page.goto(f"/ui/jobs/{job_id}")
        expect(page.locator("#status")).to_have_text("succeeded")
        shot = tmp_path / "dashboard.png"
        # the top of the page: the job, its result and the first kept rows
        page.screenshot(path=str(shot), full_page=True,
                        clip={"x": 0, "y": 0, "width": 1280, "height": 1500})
        data = shot.read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 20_000
        if os.environ.get("ISA_SAVE_SCREENSHOT"):  # refresh the committed one on request
            shutil.copyfile(shot, SCREENSHOT)
    finally:
        context.close()


def test_tenants_sessions_and_cross_site_forms(service, browser, expect):
    # tenant-a's records, made through the API
    with service.client("key-a") as api:
        ds = service.wait_dataset(api, service.upload(api, HH_SAMPLE)["id"], timeout=180)
        assert ds["status"] == "ready", ds
        r = api.post("/v1/jobs", json={"type": "select", "dataset_id": ds["id"],
                                       "method": "random", "budget": {"count": 5}})
        assert r.status_code == 201, r.text
        job_id = r.json()["id"]
        service.wait_job(api, job_id, timeout=300)

    # tenant-b sees none of it: each page answers 404 exactly like a missing record
    context = browser.new_context(base_url=service.base_url)
    try:
        page = _login(context, "key-b")
        expect(page.locator("#tenant")).to_have_text("tenant-b")
        expect(page.locator("body")).not_to_contain_text(ds["id"])
        expect(page.locator("body")).not_to_contain_text(job_id)
        for path, missing in ((f"/ui/jobs/{job_id}", "/ui/jobs/job_0000"),
                              (f"/ui/datasets/{ds['id']}", "/ui/datasets/ds_0000"),
                              (f"/ui/jobs/{job_id}/plot.png", "/ui/jobs/job_0000/plot.png"),
                              (f"/ui/jobs/{job_id}/files/scores",
                               "/ui/jobs/job_0000/files/scores")):
            theirs, nothing = page.request.get(path), page.request.get(missing)
            assert theirs.status == nothing.status == 404, path
            other_id = path.split("/")[3]
            assert theirs.text().replace(other_id, "X") == \
                nothing.text().replace(missing.split("/")[3], "X")
        # nor can tenant-b act on it
        assert page.request.post(f"/ui/jobs/{job_id}/cancel",
                                 headers={"Origin": service.base_url}).status == 404
        # logging out ends the session
        page.click("text=Log out")
        expect(page).to_have_url(re.compile(r"/ui/login$"))
        page.goto("/ui")
        expect(page).to_have_url(re.compile(r"/ui/login"))
    finally:
        context.close()

    # no cookie: any page sends the browser to the login form, and back after it
    context = browser.new_context(base_url=service.base_url)
    try:
        page = context.new_page()
        response = page.goto(f"/ui/datasets/{ds['id']}")
        assert response.request.redirected_from is not None
        assert response.request.redirected_from.response().status == 303
        expect(page).to_have_url(re.compile(r"/ui/login\?next=/ui/datasets/"))
        # a wrong key: the login page says so, and no session is made
        page.fill("#api_key", "not-a-key")
        page.click("#login")
        expect(page.locator("#login-error")).to_contain_text("not valid")
        assert context.cookies() == []
        # the right key lands on the page first asked for
        page.fill("#api_key", "key-a")
        page.click("#login")
        expect(page).to_have_url(re.compile(rf"/ui/datasets/{ds['id']}$"))
        expect(page.locator("#status")).to_have_text("ready")
    finally:
        context.close()

    # a form posted from another site is refused even with a valid session
    with httpx.Client(base_url=service.base_url, timeout=60) as http:
        r = http.post("/ui/login", data={"api_key": "key-a"},
                      headers={"Origin": service.base_url})
        assert r.status_code == 303 and "isa_ui_session" in http.cookies
        assert http.get("/ui").status_code == 200
        for origin in ("http://evil.example", "null", None, "http://[evil"):
            headers = {"Origin": origin} if origin else {}
            r = http.post(f"/ui/jobs/{job_id}/cancel", headers=headers)
            assert r.status_code == 403, origin
            r = http.post(f"/ui/datasets/{ds['id']}/jobs", headers=headers,
                          data={"method": "random", "budget": "5%"})
            assert r.status_code == 403, origin
        r = http.post("/ui/login", data={"api_key": "key-a"},
                      headers={"Referer": "http://evil.example/page"})
        assert r.status_code == 403
        # a login may only send the browser on within the dashboard
        r = http.post("/ui/login", data={"api_key": "key-a", "next": "//evil.example/x"},
                      headers={"Origin": service.base_url})
        assert r.status_code == 303 and r.headers["location"] == "/ui"



def test_a_data_set_page_escapes_every_value():
    """The data set page without a browser: a hostile file name and error render inert
    (the subset review's own logic and escaping: tests/app/test_review.py)."""
    from app.ui.render import html_page

    ds = {"id": "ds_x", "status": "invalid", "filename": "<script>alert(1)</script>.jsonl",
          "size_bytes": 10, "sha256": "ab", "options": {}, "created_at": 0.0,
          "rows_read": 3, "rows_valid": 1, "rows_skipped": 2,
          "error": {"code": "invalid_rows", "message": "<b>bad</b>", "details": {}},
          "report": {"rows_read": 3, "rows_valid": 1, "rows_skipped": 2,
                     "skipped_by_code": {"missing_field": 2},
                     "skipped": [{"code": "missing_field", "reason": "no 'chosen'",
                                  "line": 2}], "skipped_listed_truncated": False}}
    html = html_page("dataset.html", tenant="t", ds=ds, jobs=[], refresh=None, methods={},
                     error=None, form={}).body.decode()
    assert "<script>" not in html and "&lt;script&gt;alert(1)" in html
    assert "<b>bad</b>" not in html and "no &#39;chosen&#39;" in html
    assert "Start a select job" not in html  # an invalid data set takes no job


def test_the_front_page_filters_by_status_and_a_data_set_page_deletes(service, browser,
                                                                     expect):
    with service.client("key-b") as api:
        ds = service.wait_dataset(api, service.upload(api, HH_SAMPLE)["id"], timeout=180)
        assert ds["status"] == "ready", ds
    context = browser.new_context(base_url=service.base_url)
    try:
        page = _login(context, "key-b")
        # filtered by another status: not listed; by its own: listed
        page.goto("/ui?ds_status=invalid")
        expect(page.locator("#datasets-filter")).to_be_visible()
        assert ds["id"] not in page.content()
        page.select_option("#ds-status", "ready")
        page.click("#ds-filter")
        expect(page).to_have_url(re.compile(r"ds_status=ready"))
        expect(page.locator("#datasets")).to_contain_text(ds["id"])
        # deleting takes two clicks (no script on these pages), then it is gone everywhere
        page.goto(f"/ui/datasets/{ds['id']}")
        expect(page.locator("#delete-dataset")).to_be_hidden()
        page.click("#delete summary")
        page.click("#delete-dataset")
        expect(page).to_have_url(re.compile(r"/ui$"))
        assert ds["id"] not in page.content()
        with service.client("key-b") as api:
            assert api.get(f"/v1/datasets/{ds['id']}").status_code == 404
    finally:
        context.close()


def test_the_front_page_pages_by_cursor(tmp_path):
    """More records than a page: the first page and its "older" link's page hold each
    record once, newest first (the API's cursors; no browser needed)."""
    import uuid
    from urllib.parse import parse_qs, urlsplit

    import redis as redis_lib

    from app.ui.datasets import _index
    from app.ui.render import LIST_LIMIT
    from core.records import DatasetStore, JobStore
    from tests.conftest import TEST_REDIS_URL

    client = redis_lib.Redis.from_url(TEST_REDIS_URL, decode_responses=True)
    prefix = f"isa-ui-{uuid.uuid4().hex[:8]}:"
    datasets, jobs = DatasetStore(client, prefix), JobStore(client, prefix)
    try:
        made = []
        for i in range(LIST_LIMIT + 7):
            ds_id = f"ds_{i:04d}"
            datasets.create("t", ds_id, "ready", {"filename": f"f{i}.jsonl", "size_bytes": 1,
                                                   "sha256": "x", "options": {}})
            made.append(ds_id)
        first = _index("t", datasets, jobs).body.decode()
        rows = re.findall(r'href="/ui/datasets/(ds_\d+)"', first)
        assert rows == made[::-1][:LIST_LIMIT]
        link = re.search(r'id="datasets-older" href="([^"]+)"', first).group(1)
        query = parse_qs(urlsplit(link.replace("&amp;", "&")).query)
        second = _index("t", datasets, jobs, view={"ds_after": query["ds_after"][0]})
        rest = re.findall(r'href="/ui/datasets/(ds_\d+)"', second.body.decode())
        assert rest == made[::-1][LIST_LIMIT:]
        assert 'id="datasets-older"' not in second.body.decode()
        only_invalid = _index("t", datasets, jobs, view={"ds_status": "invalid"}).body.decode()
        assert "None here." in only_invalid
    finally:
        for key in client.scan_iter(f"{prefix}*"):
            client.delete(key)
