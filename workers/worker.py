"""Celery entry point for workers: ``celery -A workers.worker worker -Q cpu``."""

from core.celery_app import celery_app
from workers import supervisor  # noqa: F401  (starts the supervisor when a worker is ready)
from workers.tasks import (  # noqa: F401  (registers tasks)
    align,
    datasets,
    evaluate,
    scoring,
    select,
    webhooks,
)

__all__ = ["celery_app"]
