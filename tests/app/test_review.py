"""The subset review's own logic, without a browser (app/ui/review.py, markup.py,
report.py): views, search, filters, sorting and paging over a real row index; the score
histogram's cut; the comparison of two jobs; markdown that cannot carry a script; the
evaluate and curve tables; and the pages rendered from them, every value escaped."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pytest

from app.ui.markup import markdown, text_html
from app.ui.report import curve_table, evaluate_table
from app.ui.review import ReviewQuery, compare, review, score_histogram
from core.row_index import RowIndex, RowIndexWriter
from isa.ingest.dataset import PreferenceFile

N = 400


@pytest.fixture()
def index(tmp_path) -> RowIndex:
    rows = [{"id": f"r{i}", "prompt": f"Question {i}" + (" about BANANAS" if i % 50 == 7 else ""),
             "chosen": "x" * (i + 1), "rejected": "y", "judge": "gpt" if i % 2 else "human"}
            for i in range(N)]
    src = tmp_path / "d.jsonl"
    src.write_text("".join(json.dumps(r) + "\n" for r in rows))
    with open(tmp_path / "rows.parquet", "wb") as fh:
        w = RowIndexWriter(fh)
        for ex in PreferenceFile(src, id_field="id"):
            w.add(ex)
        w.close()
    return RowIndex(tmp_path / "rows.parquet")


def _scores(kept_top: int = 40, seed: int = 0) -> pa.Table:
    """A method that keeps the ``kept_top`` highest scores (rank 1 = highest)."""
    score = np.random.default_rng(seed).normal(size=N)
    order = np.argsort(-score)
    rank = np.empty(N, dtype=np.int64)
    rank[order] = np.arange(1, N + 1)
    return pa.table({"row_id": [f"r{i}" for i in range(N)], "source_row": list(range(N)),
                     "score": score, "rank": rank, "selected": rank <= kept_top,
                     "margin": np.zeros(N)})


def test_views_page_by_rank_with_texts(index):
    scores = _scores()
    kept = review(scores, index, ReviewQuery(), page_rows=15)
    assert (kept["total"], kept["pages"], kept["kept"], kept["units"]) == (40, 3, 40, N)
    assert [r["rank"] for r in kept["rows"]] == list(range(1, 16))
    assert set(kept["texts"]) == {r["row_id"] for r in kept["rows"]}
    first = kept["rows"][0]["row_id"]
    assert kept["texts"][first]["chosen"] == "x" * (int(first[1:]) + 1)
    assert kept["details"] == ["margin"]
    last = review(scores, index, ReviewQuery(page=99), page_rows=15)
    assert last["page"] == 3 and [r["rank"] for r in last["rows"]] == list(range(31, 41))
    dropped = review(scores, index, ReviewQuery(view="dropped"), page_rows=15)
    assert dropped["total"] == N - 40 and not any(r["selected"] for r in dropped["rows"])
    assert review(scores, index, ReviewQuery(view="all"), page_rows=15)["total"] == N


def test_search_filter_and_sort(index):
    scores = _scores()
    hits = review(scores, index, ReviewQuery(view="all", q="bananas"), page_rows=50)
    assert sorted(r["row_id"] for r in hits["rows"]) == sorted(
        f"r{i}" for i in range(N) if i % 50 == 7)  # any case
    judged = review(scores, index, ReviewQuery(view="all", column="judge", value="human"),
                    page_rows=500)
    assert judged["total"] == N // 2
    assert all(int(r["row_id"][1:]) % 2 == 0 for r in judged["rows"])
    both = review(scores, index, ReviewQuery(view="all", q="bananas", column="judge",
                                             value="gpt"), page_rows=50)
    assert {r["row_id"] for r in both["rows"]} == {f"r{i}" for i in range(N)
                                                   if i % 50 == 7 and i % 2}
    longest = review(scores, index, ReviewQuery(view="all", sort="-length"), page_rows=5)
    assert [r["row_id"] for r in longest["rows"]] == [f"r{i}" for i in range(N - 1, N - 6, -1)]
    lengths = [r["length"] for r in longest["rows"]]
    assert lengths == sorted(lengths, reverse=True)
    low = review(scores, index, ReviewQuery(view="kept", sort="score"), page_rows=40)
    s = [r["score"] for r in low["rows"]]
    assert s == sorted(s) and len(s) == 40


def test_a_page_reads_the_row_id_column_once(index, monkeypatch):
    """Search, filter, length sort and the page's texts share one read of row_id."""
    read = []
    column = index.column
    monkeypatch.setattr(index, "column", lambda *names: read.append(names) or column(*names))
    out = review(_scores(), index, ReviewQuery(view="all", q="bananas", column="judge",
                                               value="gpt", sort="-length"), page_rows=5)
    assert out["total"] == len([i for i in range(N) if i % 50 == 7 and i % 2])
    assert set(out["texts"]) == {r["row_id"] for r in out["rows"]}
    assert sum(names.count("row_id") for names in read) == 1


def test_without_an_index_the_scores_still_page(index):
    out = review(_scores(), None, ReviewQuery(q="bananas", sort="length"), page_rows=10)
    assert out["search_missing"] and out["length_missing"] and out["texts"] == {}
    assert [r["rank"] for r in out["rows"]] == list(range(1, 11))


def test_the_cut_is_drawn_only_for_a_score_threshold():
    h = score_histogram(_scores(kept_top=40))
    assert sum(h["kept"]) == 40 and sum(h["dropped"]) == N - 40
    assert h["cut"] is not None and len(h["edges"]) == len(h["kept"]) + 1
    scores = _scores()
    shuffled = scores.set_column(4, "selected", pa.array(np.arange(N) % 10 == 0))  # random
    assert score_histogram(shuffled)["cut"] is None


def test_compare_counts_the_overlap_and_correlates_the_scores():
    from scipy.stats import spearmanr

    a, b = _scores(40, seed=0), _scores(40, seed=1)
    c = compare(a, b)
    sel_a, sel_b = ({r for r, s in zip(t["row_id"].to_pylist(), t["selected"].to_pylist(),
                                       strict=True) if s} for t in (a, b))
    assert c["both"] == len(sel_a & sel_b) and c["kept_a"] == c["kept_b"] == 40
    assert {r for r, _ in c["only_a"]} == sel_a - sel_b
    assert c["jaccard"] == pytest.approx(len(sel_a & sel_b) / len(sel_a | sel_b))
    expected = spearmanr(a["score"].to_numpy(), b["score"].to_numpy()).statistic
    assert c["spearman"] == pytest.approx(expected)
    same = compare(a, a)
    assert same["both"] == 40 and same["only_a"] == [] and same["spearman"] == pytest.approx(1)
    # the units only one kept come in that job's rank order
    ranks = dict(zip(a["row_id"].to_pylist(), a["rank"].to_pylist(), strict=True))
    listed = [ranks[r] for r, _ in c["only_a"]]
    assert listed == sorted(listed)


@pytest.mark.parametrize("evil", [
    "<script>alert(1)</script>", "<img src=x onerror=alert(1)>",
    "[click](javascript:alert(1))", "![x](http://evil.example/t.png)",
    '<a href="#" onclick="alert(1)">x</a>'])
def test_markdown_carries_no_script(evil):
    import re

    html = str(markdown(f"hello {evil} **bold**"))
    assert "<strong>bold</strong>" in html
    tags = re.findall(r"<([a-zA-Z0-9]+)([^>]*)>", html)  # the real tags, not escaped text
    assert {t for t, _ in tags} <= {"p", "strong", "a"}
    for _, attrs in tags:
        assert not re.search(r"\bon\w+\s*=", attrs) and "javascript:" not in attrs


def test_markdown_renders_and_turns_stay_turns():
    html = str(markdown("# Title\n\n- a\n- b\n\n```\ncode <b>\n```\n\n[ok](https://x.org)"))
    assert "<h1>Title</h1>" in html and "<li>a</li>" in html
    assert "code &lt;b&gt;" in html and 'href="https://x.org"' in html and "noopener" in html
    turns = str(text_html([{"role": "user", "content": "hi *there*"},
                           {"role": "assistant", "content": "x" * 50}], limit=10))
    assert turns.count('class="turn') == 2 and "<em>there</em>" in turns
    assert 'class="turn turn-user"' in turns and "x" * 11 not in turns and "…" in turns


def test_report_tables_carry_intervals_and_pair_counts():
    report = {"method": "isa", "pairs": 30, "pool_pairs": 600, "eval_pairs": 200,
              "encoder": "st:mini",
              "subset": {"accuracy": 0.61, "ci_low": 0.54, "ci_high": 0.67, "n_eval": 200,
                         "n_train": 30, "balanced_accuracy": 0.58, "balanced_ci_low": 0.5,
                         "balanced_ci_high": 0.66},
              "full": {"accuracy": 0.65, "ci_low": 0.58, "ci_high": 0.71, "n_eval": 200,
                       "n_train": 600, "balanced_accuracy": None},
              "length": {"length_rule_accuracy": 0.7, "warning": "length decides"}}
    t = evaluate_table(report)
    subset, full = t["rows"]
    assert subset["accuracy"] == {"value": 0.61, "low": 0.54, "high": 0.67}
    assert (subset["pairs"], subset["eval_pairs"], full["pairs"]) == (30, 200, 600)
    assert t["length_rule"] == 0.7 and t["warning"] == "length decides"
    curve = curve_table({"metric": "balanced_accuracy", "grid_percent": [5, 10],
                         "pool_pairs": 600, "eval_pairs": 200, "full": report["full"],
                         "methods": [{"method": "random", "seeds": 5,
                                      "balanced_accuracy": [0.55, 0.6],
                                      "balanced_accuracy_ci_half_width": [0.03, 0.02],
                                      "recommended_budget_percent": 10}]})
    (m,) = curve["methods"]
    assert m["cells"] == [{"value": 0.55, "half": 0.03}, {"value": 0.6, "half": 0.02}]
    assert m["recommended"] == 10 and curve["eval_pairs"] == 200


def test_the_job_page_renders_the_review_escaped(index, tmp_path):
    from app.ui.render import html_page, job_view

    scores = _scores()
    out = review(scores, index, ReviewQuery(view="all", sort="-length"), page_rows=5)
    out |= {"histogram": score_histogram(scores), "dataset_id": "ds_x", "no_index": False,
            "columns": ["judge"]}
    # a hostile text in a row: it must come out inert
    first = out["rows"][0]["row_id"]
    out["texts"][first]["chosen"] = "<script>alert(1)</script> **fine**"
    job = {"id": "job_x", "type": "select", "status": "succeeded", "stage": "done",
           "created_at": 0.0, "request": {"dataset_id": "ds_x", "method": "isa",
                                          "budget": {"count": 40}},
           "result": {"rows_selected": 40, "files": {"scores": "scores.parquet"}}}
    html = html_page("job.html", tenant="t", job=job_view(job), files=["scores"], events=[],
                     summary={"rows_selected": 40}, plot=False, subset=out,
                     query=ReviewQuery(view="all", sort="-length"),
                     views=("kept", "dropped", "all"), sorts={"-length": "longest"},
                     others=[], table=None, preview=100, refresh=None,
                     can_cancel=False).body.decode()
    assert "<script>alert" not in html and "<strong>fine</strong>" in html
    assert html.count('class="unit"') == 5 and 'class="pair"' in html
    assert "<svg" in html and 'class="cut"' in html
    assert 'option value="judge"' in html and "page 1 of 80" in html
    assert "view=all&amp;sort=-length&amp;page=2" in html


def test_every_dashboard_template_compiles():
    """A syntax slip in a page that no other test renders would be a 500 in production."""
    from app.ui.render import _env

    names = _env.list_templates()
    assert {"job.html", "rows.html", "row.html", "compare.html", "_stats.html"} <= set(names)
    for name in names:
        _env.get_template(name)
