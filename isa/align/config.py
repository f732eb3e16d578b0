"""The settings of an alignment run: plain data, importable without torch or TRL."""

from __future__ import annotations

from typing import Literal

from pydantic import ConfigDict, Field
from pydantic.dataclasses import dataclass as pydantic_dataclass


@pydantic_dataclass(config=ConfigDict(extra="forbid"))
class AlignConfig:
    """Settings of an alignment run (TRL's defaults where they fit CPU work). Validated on
    construction; the service's job contract embeds this class as it is."""

    method: Literal["dpo", "kto"] = "dpo"  # "kto": a pair becomes two items
    #: a name in the server's model registry (the library takes a folder in run_alignment)
    base_model: str = "smollm2-135m"
    beta: float = Field(default=0.1, gt=0, le=10)
    learning_rate: float = Field(default=1e-4, gt=0, le=1)
    epochs: float = Field(default=1.0, gt=0, le=100)
    max_steps: int | None = Field(default=None, ge=1, le=1_000_000)  # overrides epochs
    batch_size: int = Field(default=4, ge=1, le=512)
    grad_accum: int = Field(default=1, ge=1, le=512)
    max_length: int = Field(default=512, ge=16, le=32768)
    seed: int = 0
    lora: bool = True
    lora_r: int = Field(default=16, ge=1, le=1024)
    lora_alpha: int = Field(default=32, ge=1, le=4096)
    lora_dropout: float = Field(default=0.05, ge=0, lt=1)
    target_modules: list[str] = Field(
        default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj"], max_length=32)
    #: recompute activations in the backward pass instead of keeping them: less memory,
    #: one more forward a step. TRL turns it on by default; a small model on a CPU has the
    #: memory and not the time (SmolLM2-135M, LoRA, batch 8, 256 tokens: see bench/dpo.py)
    gradient_checkpointing: bool = False
    logging_steps: int = Field(default=1, ge=1)
    #: held-out pairs the trained policy is scored on (when an evaluation set is given)
    eval_pairs: int = Field(default=200, ge=1, le=100_000)
