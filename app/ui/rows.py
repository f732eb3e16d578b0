"""Dashboard pages of a data set's rows, read from its row index (core/row_index.py): the
rows browser (its columns, histograms of text lengths and numeric columns, pages of rows
at any offset) and one row in full (texts not cut)."""

from __future__ import annotations

import math
from typing import Annotated, Any

from fastapi import APIRouter, Query
from fastapi.responses import HTMLResponse

from app.api.deps import Artifacts, Datasets
from app.ui.render import CELL_CHARS, PAGE_ROWS, UiError, html_page
from app.ui.session import UiTenant
from core.artifacts import ArtifactStore
from core.row_index import RowIndex

router = APIRouter(prefix="/ui", include_in_schema=False)


def _index(datasets: Datasets, artifacts: ArtifactStore, dataset_id: str,
           tenant: str) -> tuple[dict[str, Any], RowIndex]:
    doc = datasets.get(dataset_id, tenant)
    if doc is None:  # another tenant's data set reads exactly like a missing one
        raise UiError(404, "Not found", f"There is no data set {dataset_id!r}.")
    if doc["status"] != "ready":
        raise UiError(409, "Not ready", f"The data set is {doc['status']}; its rows show "
                      "once it is ready.")
    index = RowIndex.if_ready(artifacts, doc)
    if index is None:
        raise UiError(404, "No row index", "This data set was validated before row indexes "
                      "existed; upload it again to browse its rows.")
    return doc, index


@router.get("/datasets/{dataset_id}/rows")
def rows_page(dataset_id: str, tenant: UiTenant, datasets: Datasets, artifacts: Artifacts,
              page: Annotated[int, Query(ge=1, le=10**9)] = 1) -> HTMLResponse:
    doc, index = _index(datasets, artifacts, dataset_id, tenant)
    pages = max(1, math.ceil(index.rows / PAGE_ROWS))
    page = min(page, pages)
    rows = index.page((page - 1) * PAGE_ROWS, PAGE_ROWS)
    return html_page("rows.html", tenant=tenant, ds=doc, rows=rows, page=page, pages=pages,
                     total=index.rows, stats=doc.get("stats") or {}, preview=CELL_CHARS)


@router.get("/datasets/{dataset_id}/row")
def row_page(dataset_id: str, tenant: UiTenant, datasets: Datasets, artifacts: Artifacts,
             row_id: Annotated[str, Query(min_length=1, max_length=300)]) -> HTMLResponse:
    doc, index = _index(datasets, artifacts, dataset_id, tenant)
    row = index.by_ids([row_id]).get(row_id)
    if row is None:
        raise UiError(404, "Not found", f"The data set has no row {row_id!r}.")
    return html_page("row.html", tenant=tenant, ds=doc, row=row)
