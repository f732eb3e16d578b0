"""Pieces shared by the gateway and the workers: settings, Redis records, artifacts,
the Celery application. Light: nothing here imports torch."""
