"""The FastAPI gateway: ``uvicorn app.main:app``. Light: it never loads torch."""

from __future__ import annotations

from fastapi import FastAPI

from app.api.errors import install_error_handlers
from app.api.routes import datasets, health, jobs, webhooks
from app.limits import BodyLimitMiddleware
from app.metrics import MetricsMiddleware
from app.ui import routes as ui


def create_app() -> FastAPI:
    app = FastAPI(title="ISA subset-selection service", version="0.1.0",
                  description="Upload preference data, start selection jobs, download "
                  "curated subsets (ISA, arXiv 2411.10545, and baselines).")
    app.add_middleware(BodyLimitMiddleware)
    app.add_middleware(MetricsMiddleware)
    install_error_handlers(app)
    app.include_router(health.router)
    app.include_router(datasets.router)
    app.include_router(jobs.router)
    app.include_router(webhooks.router)
    ui.install(app)  # the browser dashboard at /ui (not part of the OpenAPI contract)
    return app


app = create_app()
