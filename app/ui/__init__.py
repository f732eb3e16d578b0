"""/ui — the browser dashboard: server-rendered HTML (Jinja2, autoescaped), no front-end
build step and no script, over the same stores as the API. Data sets with their
validation report, jobs with live status, report plots, and a subset browser.

- ``session``: login with an API key, the session cookie, the cross-site form check;
- ``datasets``: the front page, the upload form, a data set and its job forms
  (``forms``: a form as the API's job request);
- ``jobs``: a job, its report table and plot, its files, cancelling, the subset review
  (``review``) and the comparison of two select jobs;
- ``rows``: a data set's rows (columns, histograms, pages at any offset) and one row;
- ``markup``: texts as sanitised markdown and turns, histograms as inline SVG;
- ``render``: the templates, their filters, headers and error pages.

Every page resolves its tenant from the session cookie and reads the stores with it, so
another tenant's record answers 404 exactly like a missing one. Forms create records
through the API's own route functions, so every rule and quota is the API's.
"""

from __future__ import annotations

from urllib.parse import quote

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, RedirectResponse

from app.ui import datasets, jobs, rows, session
from app.ui.render import LoginRequired, UiError, html_page


def install(app: FastAPI) -> None:
    """Mount the dashboard on ``app``."""
    for module in (session, datasets, jobs, rows):
        app.include_router(module.router)

    @app.exception_handler(UiError)
    async def _ui_error(_: Request, exc: UiError) -> HTMLResponse:
        return html_page("error.html", exc.status, title=exc.title, message=exc.message,
                         tenant=None)

    @app.exception_handler(LoginRequired)
    async def _login(request: Request, exc: LoginRequired) -> RedirectResponse:
        response = RedirectResponse(f"/ui/login?next={quote(exc.next_path)}", status_code=303)
        if exc.clear:
            session.clear_session(request, response)
        return response
