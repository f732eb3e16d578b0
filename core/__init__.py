"""What the gateway (``app``) and the workers (``workers``) share: settings, the Redis
records and their state machine, the artifact store and its key layout, the Celery
application, and the typed job contract. Light: nothing here imports torch."""
