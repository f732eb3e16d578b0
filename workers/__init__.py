"""Compute side of the ISA service: the selection engine and (later) Celery tasks."""
