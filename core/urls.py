"""What an import's URL handling shares between ``core.imports`` (any URL) and
``core.hub`` (``hf://`` data sets), in a module of its own so neither imports the other
for it."""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit


def without_query(url: str) -> str:
    """``url`` as records and messages show it: no query string (a signature), no
    fragment."""
    try:
        return urlunsplit(urlsplit(url)._replace(query="", fragment=""))
    except ValueError:
        return url.split("?", 1)[0].split("#", 1)[0]


class ImportTooLarge(Exception):
    """A file past the bytes an import may read."""
