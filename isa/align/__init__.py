"""Alignment on a curated subset: TRL's DPOTrainer / KTOTrainer, full or LoRA, with
progress, cooperative stop, metrics, a plot, preference evaluation and an archive."""

from .models import ModelRegistry, build_tiny_llama
from .train import AlignConfig, AlignResult, preference_eval, run_alignment

__all__ = ["AlignConfig", "AlignResult", "ModelRegistry", "build_tiny_llama",
           "preference_eval", "run_alignment"]
