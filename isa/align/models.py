"""Server-side model registry: names → local folders. No hub downloads, ever."""

from __future__ import annotations

from pathlib import Path

from ..embed.models import (
    DEFAULT_MODEL_CACHE,
    SMOLLM2,
    dequantize_gguf,
    packaged_gguf,
    save_model_folder,
)
from ..errors import ConfigError

TINY = "tiny-llama-random"


def build_tiny_llama(cache_dir: Path, *, seed: int = 0) -> Path:
    """A tiny randomly initialised Llama with SmolLM2's tokenizer, for plumbing tests."""
    target = cache_dir / f"{TINY}-{seed}"
    if (target / "config.json").is_file():
        return target
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaConfig

    tok_folder = dequantize_gguf(packaged_gguf(SMOLLM2), cache_dir)  # type: ignore[arg-type]
    tok = AutoTokenizer.from_pretrained(str(tok_folder))
    torch.manual_seed(seed)
    config = LlamaConfig(vocab_size=len(tok), hidden_size=64, intermediate_size=128,
                         num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                         max_position_embeddings=1024, tie_word_embeddings=True,
                         bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                         pad_token_id=tok.pad_token_id)
    return save_model_folder(AutoModelForCausalLM.from_config(config), tok, target)


class ModelRegistry:
    """Base models an align job may name. Built in: ``smollm2-135m`` (the packaged
    SmolLM2-135M-Instruct, de-quantised once) and ``tiny-llama-random``; more from
    settings (``{"name": "/local/folder"}``)."""

    def __init__(self, extra: dict[str, str] | None = None, cache_dir: Path | None = None
                 ) -> None:
        self.extra = dict(extra or {})
        self.cache_dir = cache_dir or DEFAULT_MODEL_CACHE

    def names(self) -> list[str]:
        return sorted({"smollm2-135m", TINY, *self.extra})

    def resolve(self, name: str) -> Path:
        if name in self.extra:
            path = Path(self.extra[name])
            if not (path / "config.json").is_file():
                raise ConfigError(f"model {name!r} points to {path}, which holds no model",
                                  code="model_unavailable")
            return path
        if name == "smollm2-135m":
            return dequantize_gguf(packaged_gguf(SMOLLM2), self.cache_dir)  # type: ignore[arg-type]
        if name == TINY:
            return build_tiny_llama(self.cache_dir)
        raise ConfigError(f"unknown base model {name!r}; available: {', '.join(self.names())}",
                          code="unknown_model")
