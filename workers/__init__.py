"""The Celery side of the service: thin tasks that run the library's pipeline stages,
the job lifecycle (claim, guard, progress, cancel), and the Redis-backed caches."""
