"""The FastAPI gateway (light: never imports torch). It arrives with the service issue;
until then the engine is used through the library and the ``isa`` CLI."""
