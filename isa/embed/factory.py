"""Encoders by name: the one place the CLI, the evaluation runner and the workers build
an encoder from a few settings."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..errors import ConfigError
from ..extras import require
from .base import Encoder

DEFAULT_STATIC_BASE = "all-MiniLM-L6-v2"

ENCODERS: tuple[str, ...] = ("sentence", "causal-lm", "static")
#: models that ship in PyPI packages, by encoder (see ARCHITECTURE: no hub downloads);
#: the static encoder's table is distilled locally from the packaged MiniLM
PACKAGED_MODELS: dict[str, tuple[str, ...]] = {
    "sentence": ("all-MiniLM-L6-v2",), "causal-lm": ("SmolLM2-135M-Instruct",),
    "static": ("all-MiniLM-L6-v2",)}


def make_encoder(name: str = "sentence", *, model: str | None = None, device: str = "auto",
                 precision: str | None = None, batch_size: int | None = None,
                 max_seq_length: int | None = None, cache_dir: Path | None = None,
                 backend: str | None = None, **options: Any) -> Encoder:
    """Load an encoder.

    Args:
        name: ``"sentence"`` (sentence-transformers, default all-MiniLM-L6-v2),
            ``"causal-lm"`` (a causal LM's last token, default SmolLM2-135M-Instruct) or
            ``"static"`` (a token lookup table distilled from all-MiniLM-L6-v2: no
            transformer at encoding time; see ``isa.embed.static``).
        model: a packaged model name or a local folder (never a hub download).
        device: as the encoder classes take it (``"auto"``: CUDA where there is one).
        precision: as the encoder classes take it (``None``: the encoder's default).
        batch_size: as the encoder classes take it (``None``: the encoder's default).
        max_seq_length: truncation in tokens (``None``: the encoder's default).
        cache_dir: where de-quantised causal LMs and distilled static tables are kept.
        backend: the sentence encoder's runtime, ``"torch"`` (default) or ``"openvino"``.
        options: further keyword arguments of the encoder class.
    """
    if name not in ENCODERS:
        raise ConfigError(f"unknown encoder {name!r}; expected one of {', '.join(ENCODERS)}",
                          code="unknown_encoder")
    kwargs: dict[str, Any] = {"device": device, **options}
    if precision is not None:
        kwargs["precision"] = precision
    if batch_size is not None:
        kwargs["batch_size"] = batch_size
    if backend not in (None, "torch"):
        if name != "sentence":
            raise ConfigError(f"backend {backend!r} is for the sentence encoder",
                              code="invalid_encoder")
        kwargs["backend"] = backend
    if name == "static":
        require("embed", "the static encoder", "model2vec")
        from .static import StaticEncoder

        return StaticEncoder(model or DEFAULT_STATIC_BASE, max_seq_length=max_seq_length,
                             cache_dir=cache_dir, **kwargs)
    if name == "sentence":
        require("embed", "the sentence encoder", "torch", "sentence_transformers")
        from .sentence import DEFAULT_SENTENCE_MODEL, SentenceTransformerEncoder

        return SentenceTransformerEncoder(model or DEFAULT_SENTENCE_MODEL,
                                          max_seq_length=max_seq_length, **kwargs)
    require("embed", "the causal-lm encoder", "torch", "transformers", "gguf")
    from .causal import CausalLMEncoder
    from .models import SMOLLM2

    if max_seq_length is not None:
        kwargs["max_length"] = max_seq_length
    return CausalLMEncoder(model or SMOLLM2, cache_dir=cache_dir, **kwargs)
