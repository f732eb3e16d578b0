"""The subset review: a select job's units (kept, dropped or all) filtered, searched,
sorted and paged, with their texts from the data set's row index, the score histogram
with the budget's cut, and the comparison of two jobs on one data set.

Everything reads two Parquet files: the job's ``scores.parquet`` (every unit's score,
rank and selection, a few columns) and the data set's row index (texts in row groups of
128): a page reads the scores whole (small) and only the row groups its rows sit in."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from core.artifacts import SCORES, ArtifactStore, Keys
from core.row_index import TEXTS, RowIndex

if TYPE_CHECKING:
    import pyarrow as pa

View = Literal["kept", "dropped", "all"]
Sort = Literal["rank", "score", "-score", "length", "-length"]
VIEWS: tuple[str, ...] = ("kept", "dropped", "all")
SORTS: dict[str, str] = {"rank": "rank (kept first)", "score": "score, lowest first",
                         "-score": "score, highest first", "length": "length, shortest first",
                         "-length": "length, longest first"}
#: columns of scores.parquet that are not the method's own per-row details
SCORE_BASE = ("row_id", "item", "source_row", "score", "rank", "selected")
HIST_BINS = 30


@dataclass(frozen=True)
class ReviewQuery:
    """What the page asks for (its query string, already validated by the route)."""

    view: View = "kept"
    sort: Sort = "rank"
    q: str = ""
    column: str = ""
    value: str = ""
    page: int = 1


def read_scores(artifacts: ArtifactStore, job_id: str) -> pa.Table:
    import pyarrow.parquet as pq

    with artifacts.open_read(Keys.job_file(job_id, SCORES.filename)) as fh:
        return pq.read_table(fh)


def _lengths(index: RowIndex, ids: pa.ChunkedArray) -> pa.Table:
    """row_id (``ids``: the index's row_id column) and the unit's length in characters
    (prompt and its answers)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    cols = index.column(*(f"{t}_chars" for t in TEXTS))
    total = None
    for t in TEXTS:
        c = pc.fill_null(cols[f"{t}_chars"], 0)
        total = c if total is None else pc.add(total, c)
    return pa.table({"row_id": ids, "length": total})


def _matching(index: RowIndex, ids: pa.ChunkedArray, query: ReviewQuery) -> pa.ChunkedArray:
    """The row ids (of ``ids``, the index's row_id column) whose texts contain ``q`` (any
    case) and whose extra column ``column`` reads ``value``."""
    import pyarrow as pa
    import pyarrow.compute as pc

    names = (list(TEXTS) if query.q else []) + (["extra"] if query.column else [])
    table = index.column(*names)
    mask = pa.array(np.ones(table.num_rows, dtype=bool))
    if query.q:
        hit = None
        for t in TEXTS:
            m = pc.fill_null(pc.match_substring(table[t], query.q, ignore_case=True), False)
            hit = m if hit is None else pc.or_(hit, m)
        mask = pc.and_(mask, hit)
    if query.column:
        wanted = query.value
        extras = table["extra"].to_pylist()
        keep = [_extra_value(e, query.column) == wanted for e in extras]
        mask = pc.and_(mask, pa.array(keep))
    return ids.filter(mask)


def _extra_value(extra: str | None, column: str) -> str | None:
    if not extra:
        return None
    value = json.loads(extra).get(column)
    if value is None:
        return None
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


def review(scores: pa.Table, index: RowIndex | None, query: ReviewQuery,
           page_rows: int) -> dict[str, Any]:
    """One page of units with their texts, and what the page's header shows."""
    import pyarrow.compute as pc

    # the index's row_id column, read once for the search, the length sort and the texts
    ids = None if index is None else index.column("row_id")["row_id"]
    table = scores
    if query.view != "all":
        table = table.filter(pc.equal(table["selected"], query.view == "kept"))
    searched = bool(query.q or query.column)
    if searched and index is not None:
        table = table.filter(pc.is_in(table["row_id"],
                                      value_set=_matching(index, ids, query)))
    if query.sort in ("length", "-length") and index is not None:
        table = table.join(_lengths(index, ids), "row_id", join_type="left outer")
    order = {"rank": [("rank", "ascending")], "score": [("score", "ascending")],
             "-score": [("score", "descending")], "length": [("length", "ascending")],
             "-length": [("length", "descending")]}[query.sort]
    if order[0][0] not in table.column_names:
        order = [("rank", "ascending")]
    table = table.sort_by(order + [("rank", "ascending")])
    total = table.num_rows
    pages = max(1, math.ceil(total / page_rows))
    page = min(max(query.page, 1), pages)
    rows = table.slice((page - 1) * page_rows, page_rows).to_pylist()
    texts = {} if index is None else index.by_ids(
        list(dict.fromkeys(r["row_id"] for r in rows)), ids)
    details = [c for c in scores.column_names if c not in SCORE_BASE]
    return {"rows": rows, "texts": texts, "total": total, "page": page, "pages": pages,
            "item": "item" in scores.column_names, "details": details,
            "kept": pc.sum(scores["selected"]).as_py() or 0, "units": scores.num_rows,
            "searched": searched, "search_missing": searched and index is None,
            "length_missing": query.sort.endswith("length") and index is None}


def score_histogram(scores: pa.Table) -> dict[str, Any] | None:
    """Kept and dropped counts over the scores' range, and the cut: the lowest kept score
    when the method kept exactly the highest scores (else None: the cut is not a score
    threshold, e.g. random or a stratified method)."""
    score = scores["score"].to_numpy(zero_copy_only=False).astype(float)
    kept = scores["selected"].to_numpy(zero_copy_only=False).astype(bool)
    finite = np.isfinite(score)
    if not finite.any():
        return None
    lo, hi = float(score[finite].min()), float(score[finite].max())
    edges = np.linspace(lo, hi if hi > lo else lo + 1.0, HIST_BINS + 1)
    k, _ = np.histogram(score[finite & kept], bins=edges)
    d, _ = np.histogram(score[finite & ~kept], bins=edges)
    cut = None
    if kept.any() and (~kept).any():
        low_kept = float(score[kept & finite].min()) if (kept & finite).any() else None
        high_dropped = float(score[~kept & finite].max()) if (~kept & finite).any() else None
        if low_kept is not None and high_dropped is not None and low_kept >= high_dropped:
            cut = low_kept
    return {"edges": [float(e) for e in edges], "kept": [int(c) for c in k],
            "dropped": [int(c) for c in d], "cut": cut}


def _units(scores: pa.Table) -> list[tuple[str, str]]:
    items = scores["item"].to_pylist() if "item" in scores.column_names else None
    ids = scores["row_id"].to_pylist()
    return list(zip(ids, items or [""] * len(ids), strict=True))


def compare(a: pa.Table, b: pa.Table) -> dict[str, Any]:
    """Two select jobs' subsets of one data set: the overlap, the units only one kept,
    and the rank correlation of their scores over the units both scored."""
    import pandas as pd

    ua, ub = _units(a), _units(b)
    sel_a = {u for u, s in zip(ua, a["selected"].to_pylist(), strict=True) if s}
    sel_b = {u for u, s in zip(ub, b["selected"].to_pylist(), strict=True) if s}
    both = sel_a & sel_b
    union = sel_a | sel_b
    sa = pd.Series(a["score"].to_numpy(zero_copy_only=False), index=pd.MultiIndex.from_tuples(ua))
    sb = pd.Series(b["score"].to_numpy(zero_copy_only=False), index=pd.MultiIndex.from_tuples(ub))
    joined = pd.concat([sa, sb], axis=1, join="inner").dropna()
    spearman = None
    if len(joined) >= 3 and joined.iloc[:, 0].nunique() > 1 and joined.iloc[:, 1].nunique() > 1:
        spearman = float(joined.iloc[:, 0].rank().corr(joined.iloc[:, 1].rank()))
    rank_a = dict(zip(ua, a["rank"].to_pylist(), strict=True))
    rank_b = dict(zip(ub, b["rank"].to_pylist(), strict=True))
    return {"kept_a": len(sel_a), "kept_b": len(sel_b), "both": len(both),
            "jaccard": len(both) / len(union) if union else None,
            "only_a": sorted(sel_a - sel_b, key=lambda u: rank_a[u]),
            "only_b": sorted(sel_b - sel_a, key=lambda u: rank_b[u]),
            "scored_both": len(joined), "spearman": spearman}
