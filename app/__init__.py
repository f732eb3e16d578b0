"""The HTTP gateway (FastAPI): authenticates, validates against the job contract, streams
uploads into the artifact store, writes records and enqueues tasks by name. Light: it
never loads torch or the library's model-loading modules."""
