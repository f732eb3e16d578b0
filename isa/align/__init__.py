"""Alignment on a curated subset: TRL's DPOTrainer / KTOTrainer, full or LoRA, with
progress, cooperative stop, metrics, a plot, preference evaluation and an archive.

``config`` (the settings) and ``models`` (the model registry) are light; ``train`` is
loaded only when one of its names is first used."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_EXPORTS = {"AlignConfig": ".config", "ModelRegistry": ".models",
            "build_tiny_llama": ".models", "AlignResult": ".train",
            "preference_eval": ".train", "run_alignment": ".train"}
__all__ = ["AlignConfig", "AlignResult", "ModelRegistry", "build_tiny_llama",
           "preference_eval", "run_alignment"]


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'isa.align' has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name], __name__), name)


if TYPE_CHECKING:
    from .config import AlignConfig
    from .models import ModelRegistry, build_tiny_llama
    from .train import AlignResult, preference_eval, run_alignment
