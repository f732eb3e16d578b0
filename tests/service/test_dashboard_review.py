"""The dashboard as a review tool, in a real Chromium against the real service: a select
job's units side by side (kept and dropped, searched, filtered by a column, sorted by
length, paged), the score histogram with the budget's cut, a row in full, two jobs
compared, a data set's rows and histograms at any page, and an evaluate job's table with
its intervals and pair counts. A hostile row renders inert."""

from __future__ import annotations

import io
import os
import re
import shutil

import pyarrow.parquet as pq

from isa.ingest.records import render_text
from tests.conftest import HH_SAMPLE, ROOT, read_rows, write_jsonl
from tests.service.test_dashboard import _login, browser, expect  # noqa: F401 - fixtures

HOSTILE_ROW = 5
SCREENSHOT = ROOT / "bench" / "results" / "review.png"
HOSTILE = ("<script>window.hacked = 1</script> **bold claim** "
           + "long answer " * 300 + "THE-END-MARKER")


def _rows() -> list[dict]:
    rows = read_rows(HH_SAMPLE, 600)
    for i, r in enumerate(rows):
        r["judge"] = "human" if i % 3 == 0 else "model"
    rows[HOSTILE_ROW]["chosen"] += " " + HOSTILE  # the answer's last turn: HH's shape stays
    return rows


def _kept(api, job_id: str) -> list[str]:
    scores = pq.read_table(io.BytesIO(api.get(f"/v1/jobs/{job_id}/scores").content))
    return [r["row_id"] for r in sorted(scores.to_pylist(), key=lambda r: r["rank"])
            if r["selected"]]


def test_review_a_subset_compare_two_and_read_an_evaluation(service, browser, expect,  # noqa: F811
                                                           tmp_path):
    rows = _rows()
    with service.client("key-a") as api:
        ds = service.wait_dataset(api, service.upload(
            api, write_jsonl(tmp_path / "review.jsonl", rows))["id"])
        assert ds["status"] == "ready", ds.get("error")
        # validation's statistics: the columns and histograms the pages draw
        assert ds["stats"]["columns"] == ["prompt", "chosen", "rejected", "judge"]
        assert sum(ds["stats"]["lengths"]["chosen_chars"]["counts"]) == 600
        # a preview page at the end reads the row index: the last 10 rows, in order
        tail = api.get(f"/v1/datasets/{ds['id']}/rows", params={"offset": 590, "limit": 20})
        assert [r["row"] for r in tail.json()["data"]] == list(range(590, 600))
        jobs = {}
        for seed in (0, 1):
            r = api.post("/v1/jobs", json={"type": "select", "dataset_id": ds["id"],
                                           "method": "random", "seed": seed,
                                           "budget": {"fraction": 0.1}})
            assert r.status_code == 201, r.text
            jobs[seed] = r.json()["id"]
        ev = api.post("/v1/jobs", json={"type": "evaluate", "dataset_id": ds["id"],
                                        "method": "random", "budget": {"fraction": 0.25},
                                        "encoder": {"max_seq_length": 64}})
        assert ev.status_code == 201, ev.text
        for job_id in [*jobs.values(), ev.json()["id"]]:
            assert service.wait_job(api, job_id, timeout=600)["status"] == "succeeded"
        kept_a, kept_b = _kept(api, jobs[0]), _kept(api, jobs[1])
        evaluation = api.get(f"/v1/jobs/{ev.json()['id']}").json()["result"]

    context = browser.new_context(base_url=service.base_url,
                                  viewport={"width": 1280, "height": 900})
    try:
        page = _login(context, "key-a")
        page.goto(f"/ui/jobs/{jobs[0]}")
        expect(page.locator("#status")).to_have_text("succeeded")
        units = page.locator("#subset-units .unit")
        # 60 kept (10% of 600), 50 a page, by rank, each with its answers side by side
        expect(page.locator("#review-count")).to_have_text("60 units.")
        expect(units).to_have_count(50)
        assert page.locator("#subset-units .row-id").all_inner_texts() == kept_a[:50]
        expect(units.first.locator(".pair .answer.chosen")).to_be_visible()
        expect(units.first.locator(".pair .answer.rejected")).to_be_visible()
        page.click("#subset .pager .next >> nth=0")
        assert page.locator("#subset-units .row-id").all_inner_texts() == kept_a[50:]
        # the histogram: kept and dropped bars, and the budget's cut
        hist = page.locator("#score-histogram svg")
        assert hist.locator("rect.kept").count() > 0 and hist.locator("rect.dropped").count() > 0
        assert hist.locator("line.cut").count() == 1

        # every unit, searched: the count is the rows whose texts hold the word, any case
        word = "police"
        # (HH rows hold the prompt inside each answer, so the raw answers hold every text)
        expected = sum(1 for r in rows if any(word in render_text(r[k]).lower()
                                               for k in ("chosen", "rejected")))
        assert 0 < expected < 600
        page.select_option("#review-view", "all")
        page.fill("#review-q", word.upper())
        page.click("#review-apply")
        expect(page.locator("#review-count")).to_have_text(f"{expected} units match.")
        # a column filter, with the search kept
        page.select_option("#review-column", "judge")
        page.fill("#review-value", "human")
        page.click("#review-apply")
        both = sum(1 for i, r in enumerate(rows) if i % 3 == 0 and any(
            word in render_text(r[k]).lower() for k in ("chosen", "rejected")))
        expect(page.locator("#review-count")).to_contain_text(f"{both} unit")
        # dropped units, longest first; no row's script became an element
        page.goto(f"/ui/jobs/{jobs[0]}?view=dropped&sort=-length")
        expect(page.locator("#review-count")).to_have_text("540 units.")
        lengths = [int(t.split()[0].replace(",", "")) for t in
                   page.locator("#subset-units .unit-head span:has-text('characters')")
                   .all_inner_texts()]
        assert len(lengths) == 50 and lengths == sorted(lengths, reverse=True)
        assert page.locator("script").count() == 0  # no row's script became an element
        assert page.evaluate("() => window.hacked === undefined")
        shot = tmp_path / "review.png"
        page.goto(f"/ui/jobs/{jobs[0]}")
        page.screenshot(path=str(shot), full_page=True,
                        clip={"x": 0, "y": 0, "width": 1280, "height": 1800})
        assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        if os.environ.get("ISA_SAVE_SCREENSHOT"):
            shutil.copyfile(shot, SCREENSHOT)

        # the hostile row in full: markdown rendered, the script text inert, nothing cut
        row_id = _row_id(service, ds["id"], HOSTILE_ROW)
        page.goto(f"/ui/datasets/{ds['id']}/row?row_id={row_id}")
        expect(page.locator("#row .answer.chosen")).to_contain_text("THE-END-MARKER")
        expect(page.locator("#row .answer.chosen strong")).to_have_text("bold claim")
        expect(page.locator("#row .answer.chosen")).to_contain_text("<script>")
        assert page.locator("script").count() == 0

        # two jobs compared: the page's numbers are the two score files'
        page.goto(f"/ui/jobs/{jobs[0]}")
        page.select_option("#compare-other", jobs[1])
        page.click("#compare-go")
        expect(page).to_have_url(re.compile(rf"/ui/jobs/{jobs[0]}/compare\?other={jobs[1]}"))
        both_kept = len(set(kept_a) & set(kept_b))
        expect(page.locator("#both")).to_contain_text(str(both_kept))
        expect(page.locator("#only-a-count")).to_have_text(str(60 - both_kept))
        listed = page.locator("#only-a .unit .row-id").all_inner_texts()
        assert listed == [r for r in kept_a if r not in set(kept_b)][:20]

        # the data set's rows: columns, length histograms, the last page at once
        page.goto(f"/ui/datasets/{ds['id']}")
        expect(page.locator("#columns")).to_contain_text("judge")  # its page has them too
        assert page.locator("figure.length-hist").count() == 3
        page.click("#browse-rows")
        expect(page).to_have_url(re.compile(rf"/ui/datasets/{ds['id']}/rows$"))
        expect(page.locator("#columns")).to_contain_text("judge")
        assert page.locator("figure.length-hist").count() == 3
        page.click("#rows .pager .last")
        expect(page.locator("#rows h2")).to_contain_text("page 12 of 12")
        expect(page.locator("#rows .unit").last.locator(".unit-head")).to_contain_text("row 599")

        # the evaluate job: its table shows the intervals and the pair counts
        page.goto(f"/ui/jobs/{ev.json()['id']}")
        table = page.locator("#evaluate-table")
        expect(table).to_contain_text(f"[{evaluation['accuracy_ci_low']:.4g}, "
                                      f"{evaluation['accuracy_ci_high']:.4g}]")
        expect(page.locator("#report-table h2")).to_contain_text(
            f"{evaluation['eval_pairs']} evaluation pairs")
        expect(table.locator("tbody tr").first).to_contain_text(str(evaluation["subset_pairs"]))
    finally:
        context.close()


def _row_id(service, dataset_id: str, row: int) -> str:
    with service.client("key-a") as api:
        return api.get(f"/v1/datasets/{dataset_id}/rows",
                       params={"offset": row, "limit": 1}).json()["data"][0]["row_id"]
