"""Which ``pip install`` extra a feature needs, and a clear error when it is missing.

``pip install isa-service`` is the light core (read, validate, budget and export
preference files; the random and margin methods) and the Python client; the heavy
dependencies sit in extras (``pyproject.toml``):

* ``embed``: the encoders (torch, sentence-transformers, transformers) and the methods and
  evaluation over embeddings (scikit-learn, scipy, cleanlab, matplotlib);
* ``align``: DPO/KTO training (trl, peft, datasets) and ``embed``;
* ``service``: the gateway and workers (FastAPI, Celery, Redis, ...).

Code that needs one calls :func:`require` before its lazy imports, so a light install
says what to install instead of failing with a bare ``ModuleNotFoundError``.
"""

from __future__ import annotations

import importlib.util

from .errors import ConfigError


class MissingExtraError(ConfigError):
    """A feature was used whose optional dependencies are not installed."""

    code = "missing_extra"


def _installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # a parent package missing, or a broken one
        return False


def require(extra: str, feature: str, *modules: str) -> None:
    """Raise :class:`MissingExtraError` unless every one of ``modules`` can be imported.

    ``feature`` names what was asked for (``"the sentence encoder"``); the message tells
    the user to ``pip install 'isa-service[<extra>]'``."""
    missing = [m for m in modules if not _installed(m)]
    if missing:
        raise MissingExtraError(
            f"{feature} needs {', '.join(missing)}, which this install lacks: "
            f"pip install 'isa-service[{extra}]'", extra=extra, missing=missing)
