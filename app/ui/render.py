"""What every dashboard page shares: the Jinja2 environment (autoescaped) and its
filters, the security headers, the error pages' exceptions, and a job as the pages show it."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from fastapi.responses import HTMLResponse
from jinja2 import Environment, FileSystemLoader, Undefined

from app.ui.markup import histogram_svg, text_html
from core.contract import job_public

#: kept rows per page of the subset browser
PAGE_ROWS = 50
#: characters of each text (or turn) a review table's cell shows; the row's page has all
CELL_CHARS = 1_200
#: records listed on the front page (the newest)
LIST_LIMIT = 50
#: a page whose record is still changing reloads itself after this many seconds
REFRESH_S = 2
LIVE_JOB = ("queued", "running", "cancelling")
LIVE_DATASET = ("uploaded", "validating")
HEADERS = {
    # no script, no foreign origin: styles inline, images (plots) from here only
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; "
    "img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}


def _when(ts: float | None) -> str:
    if ts is None or isinstance(ts, Undefined):
        return "—"
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _cell(value: Any) -> str:
    if value is None or isinstance(value, Undefined) or (
            isinstance(value, float) and math.isnan(value)):
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, dict | list):
        return json.dumps(value, ensure_ascii=False, default=str)
    return str(value)


def _budget(value: Any) -> str:
    if isinstance(value, dict) and value.get("fraction") is not None:
        return f"{value['fraction'] * 100:g}%"
    if isinstance(value, dict) and value.get("count") is not None:
        return f"{value['count']:,} rows"
    return _cell(value)


def _pretty(value: Any) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False, default=str)


_env = Environment(loader=FileSystemLoader(str(Path(__file__).parent / "templates")),
                   autoescape=True, trim_blocks=True, lstrip_blocks=True)
def _query(params: dict[str, Any]) -> str:
    """A link's query string of the non-empty ``params`` (escaped by the template)."""
    return urlencode({k: v for k, v in params.items() if v})


_env.filters.update(when=_when, cell=_cell, pretty=_pretty, budget=_budget, query=_query,
                    text=text_html)
_env.globals.update(histogram_svg=histogram_svg)


def html_page(name: str, status_code: int = 200, **context: Any) -> HTMLResponse:
    html = _env.get_template(name).render(**context)
    return HTMLResponse(html, status_code=status_code, headers=HEADERS)


class UiError(Exception):
    """Answered with the error page (``status``)."""

    def __init__(self, status: int, title: str, message: str) -> None:
        super().__init__(message)
        self.status, self.title, self.message = status, title, message


class LoginRequired(Exception):
    """No valid session: answered with a redirect to the login form."""

    def __init__(self, next_path: str, clear: bool) -> None:
        super().__init__(next_path)
        self.next_path, self.clear = next_path, clear


def job_view(doc: dict[str, Any], waiting_since: float | None = None) -> dict[str, Any]:
    """The job as the API shows it (``job_public``), with what the pages add."""
    view = job_public(doc, waiting_since).model_dump()
    done, total = view["progress"]["done"], view["progress"]["total"]
    view["live"] = view["status"] in LIVE_JOB
    view["percent"] = 100 * min(done, total) / total if total else (
        100.0 if view["status"] == "succeeded" else 0.0)
    return view


