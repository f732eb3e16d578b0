"""Celery tasks: thin edges that translate between the queue and the selection engine."""
