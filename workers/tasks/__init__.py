"""Celery tasks, one module per job type: thin edges between the queue and the library's
stages; the job lifecycle they share is ``workers.lifecycle``."""
