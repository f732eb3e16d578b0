"""The FastAPI gateway: ``uvicorn app.main:app``. Light: it never loads torch."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import redis
from fastapi import Depends, FastAPI
from starlette.concurrency import run_in_threadpool

import app.docs as docs
import app.ui as ui
from app.api.deps import _redis
from app.api.errors import install_error_handlers
from app.api.polling import JobPollFastPath
from app.api.query import known_query_parameters
from app.api.routes import datasets, health, jobs, methods, webhooks
from app.keyfile import announce, ensure_keys_file
from app.limits import BodyLimitMiddleware
from app.metrics import MetricsMiddleware
from core.records import DatasetStore, JobStore
from core.settings import get_settings

log = logging.getLogger("isa.gateway")


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    settings = get_settings()
    if (path := settings.api_keys_file) is not None:
        if settings.create_api_keys_file:
            if key := ensure_keys_file(path):
                announce(key, path)
        elif not path.is_file():
            log.warning("ISA_API_KEYS_FILE %s does not exist: no API keys are read from it "
                        "(set ISA_CREATE_API_KEYS_FILE=true to have it created with a "
                        "random key on first start)", path)
    # Records written by a version without per-filter listing indexes get them once.
    try:
        client = _redis(settings.redis_url, settings.redis_pool_size)
        for store in (JobStore(client, settings.key_prefix),
                      DatasetStore(client, settings.key_prefix)):
            if n := await run_in_threadpool(store.ensure_indexes):
                log.info("indexed %d %ss for filtered listings", n, store.kind)
    except redis.RedisError as exc:  # the health route reports Redis; the gateway starts
        log.warning("listing indexes not checked, Redis unavailable: %s", exc)
    yield


class Gateway(FastAPI):
    """FastAPI with the polling fast path (``app/api/polling.py``) asked first, in front
    of the whole middleware stack: fleets of pollers make most of the gateway's requests,
    and a successful poll needs none of that stack."""

    fast_path: JobPollFastPath | None = None

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if self.fast_path is not None and await self.fast_path.answered(scope, send):
            return
        await super().__call__(scope, receive, send)


def create_app() -> Gateway:
    # docs_url/redoc_url off: app.docs serves both with local assets instead of a CDN's
    app = Gateway(title="ISA subset-selection service", version="0.1.0", lifespan=lifespan,
                  docs_url=None, redoc_url=None,
                  description="Upload preference data, start selection jobs, download "
                  "curated subsets (ISA, arXiv 2411.10545, and baselines).")
    if get_settings().api_poll_fast_path:
        app.fast_path = JobPollFastPath(None)  # asked by Gateway.__call__, so no app behind
    app.add_middleware(BodyLimitMiddleware)
    app.add_middleware(MetricsMiddleware)
    install_error_handlers(app)
    strict = [Depends(known_query_parameters)]  # a misspelt filter is an error, not ignored
    app.include_router(health.router)
    app.include_router(datasets.router, dependencies=strict)
    app.include_router(jobs.router, dependencies=strict)
    app.include_router(webhooks.router, dependencies=strict)
    app.include_router(methods.router, dependencies=strict)
    docs.install(app)
    ui.install(app)  # the browser dashboard at /ui (not part of the OpenAPI contract)
    return app


app = create_app()
