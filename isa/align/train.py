"""DPO / KTO training with TRL on a subset, on CPU or GPU, with LoRA (peft) or full
fine-tuning."""

from __future__ import annotations

import copy
import json
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ..embed.device import resolve_device
from ..errors import ConfigError
from ..extras import require
from ..ingest.records import Example, render_text
from .config import AlignConfig

ProgressFn = Callable[[int, int, float | None], None]  # (step, total steps, latest loss)


@dataclass
class AlignResult:
    steps: int
    #: examples the trainer kept (TRL drops one whose prompt alone fills max_length)
    examples_trained: int
    stopped_early: bool
    seconds: float
    seconds_per_step: float
    history: list[dict[str, Any]]
    evaluation: dict[str, Any] | None
    model_dir: Path

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["model_dir"] = str(self.model_dir)
        return d


def dpo_rows(examples: Sequence[Example]) -> list[dict[str, str]]:
    rows = []
    for e in examples:
        if e.kind != "pair":
            raise ConfigError("DPO needs paired data; use method 'kto' for unpaired items",
                              code="invalid_parameters")
        rows.append({"prompt": render_text(e.prompt), "chosen": render_text(e.chosen or ""),
                     "rejected": render_text(e.rejected or "")})
    return rows


def fit_prompts(rows: list[dict[str, Any]], tok: Any, max_length: int,
                completions: Sequence[str]) -> list[dict[str, Any]]:
    """Cut each row's prompt from the left so that prompt + its longest completion fit
    ``max_length`` tokens. TRL truncates from the end (``keep_start``) and drops a row
    whose prompt alone fills ``max_length``: a long multi-turn dialogue would otherwise
    lose its answers — the part that carries the preference — or vanish from training.
    """
    out = []
    for row in rows:
        longest = max(len(tok(row[c], add_special_tokens=False)["input_ids"])
                      for c in completions)
        # at least a few prompt tokens: then TRL cuts the (over-long) completions' end
        budget = max(max_length - longest - 4, min(32, max_length // 4))
        ids = tok(row["prompt"], add_special_tokens=False)["input_ids"]
        if len(ids) > budget:
            row = {**row, "prompt": tok.decode(ids[-budget:])}
        out.append(row)
    return out


def kto_rows(examples: Sequence[Example]) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for e in examples:
        p = render_text(e.prompt)
        if e.kind == "pair":
            rows.append({"prompt": p, "completion": render_text(e.chosen or ""), "label": True})
            rows.append({"prompt": p, "completion": render_text(e.rejected or ""),
                         "label": False})
        else:
            rows.append({"prompt": p, "completion": render_text(e.completion or ""),
                         "label": bool(e.label)})
    return rows


def run_alignment(train: Sequence[Example], model_path: Path, out_dir: Path,
                  config: AlignConfig, *, eval_pairs: Sequence[Example] = (),
                  progress: ProgressFn | None = None,
                  should_stop: Callable[[], bool] | None = None,
                  device: str = "auto",
                  evaluate: Callable[[Any, Any], dict[str, Any]] | None = None) -> AlignResult:
    """Train on ``train``; save the model (or LoRA adapter) under ``out_dir/model``.
    ``should_stop`` is polled after every step: training then ends and what was trained
    so far is saved. ``evaluate(policy, tokenizer)``, when given, scores the trained
    policy instead of ``eval_pairs`` (the DPO yardstick scores against cached reference
    log-probabilities)."""
    require("align", "alignment training", "torch", "transformers", "trl", "peft", "datasets")
    import torch
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback

    device = resolve_device(device)
    torch.manual_seed(config.seed)
    tok = AutoTokenizer.from_pretrained(str(model_path), local_files_only=True)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    model = AutoModelForCausalLM.from_pretrained(str(model_path), local_files_only=True,
                                                 dtype=torch.float32)
    common = dict(output_dir=str(out_dir / "checkpoints"), per_device_train_batch_size=
                  config.batch_size, gradient_accumulation_steps=config.grad_accum,
                  learning_rate=config.learning_rate, num_train_epochs=config.epochs,
                  max_steps=config.max_steps or -1, logging_steps=config.logging_steps,
                  save_strategy="no", report_to=[], seed=config.seed, beta=config.beta,
                  max_length=config.max_length, use_cpu=device == "cpu",
                  disable_tqdm=True, remove_unused_columns=False,
                  gradient_checkpointing=config.gradient_checkpointing,
                  # TRL's configs default to bf16 autocast; on a CPU without AMX that is
                  # 12x slower than float32 (SmolLM2-135M DPO step, batch 4, 256 tokens,
                  # 2 cores: 362 s vs 30 s), so bf16 only where a GPU supports it
                  bf16=device.startswith("cuda") and torch.cuda.is_bf16_supported())
    peft_config = None
    if config.lora:
        from peft import LoraConfig

        peft_config = LoraConfig(r=config.lora_r, lora_alpha=config.lora_alpha,
                                 lora_dropout=config.lora_dropout,
                                 target_modules=list(config.target_modules),
                                 task_type="CAUSAL_LM")
    history: list[dict[str, Any]] = []
    state = {"stopped": False}

    class Hooks(TrainerCallback):
        def on_log(self, args, st, control, logs=None, **kw):  # type: ignore[no-untyped-def]
            if logs and "loss" in logs:
                history.append({"step": st.global_step, **{k: float(v) for k, v in
                                                          logs.items()}})
                if progress:
                    progress(st.global_step, st.max_steps, float(logs["loss"]))

        def on_step_end(self, args, st, control, **kw):  # type: ignore[no-untyped-def]
            if should_stop is not None and should_stop():
                state["stopped"] = True
                control.should_training_stop = True

    if config.method == "dpo":
        from trl import DPOConfig, DPOTrainer

        rows = fit_prompts(dpo_rows(train), tok, config.max_length, ("chosen", "rejected"))
        # the reference's log-probabilities once per pair before training, not once per
        # pair and epoch: the same numbers (dropout is off), one forward fewer a step
        trainer = DPOTrainer(model=model, args=DPOConfig(**common,
                                                         precompute_ref_log_probs=True),
                             train_dataset=Dataset.from_list(rows),
                             processing_class=tok, peft_config=peft_config,
                             callbacks=[Hooks()])
    else:
        from trl import KTOConfig, KTOTrainer

        # KTO needs its reference model handed over when the policy has no hub name.
        ref = None if config.lora else copy.deepcopy(model)
        rows = fit_prompts(kto_rows(train), tok, config.max_length, ("completion",))
        trainer = KTOTrainer(model=model, ref_model=ref, args=KTOConfig(**common),
                             train_dataset=Dataset.from_list(rows),
                             processing_class=tok, peft_config=peft_config,
                             callbacks=[Hooks()])
    examples_trained = len(trainer.train_dataset)  # type: ignore[arg-type]
    t = time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - t
    steps = trainer.state.global_step
    model_dir = out_dir / "model"
    trainer.save_model(str(model_dir))
    tok.save_pretrained(str(model_dir))
    (model_dir / "isa_align.json").write_text(json.dumps(
        {"base_model": str(model_path), "config": asdict(config)}, indent=1))
    shutil.rmtree(out_dir / "checkpoints", ignore_errors=True)
    evaluation = None
    if evaluate is not None:
        evaluation = evaluate(trainer.model.eval(), tok)
    elif eval_pairs:
        policy = trainer.model.eval()
        base = AutoModelForCausalLM.from_pretrained(str(model_path), local_files_only=True,
                                                    dtype=torch.float32).eval()
        evaluation = preference_eval(policy, base, tok, dpo_rows(eval_pairs),
                                     beta=config.beta, max_length=config.max_length)
    return AlignResult(steps, examples_trained, state["stopped"], seconds,
                       seconds / max(steps, 1), history, evaluation, model_dir)


def _logps(model: Any, tok: Any, prompts: list[str], completions: list[str],
           max_length: int, batch_size: int = 8) -> list[float]:
    """Sum of log-probabilities of each completion given its prompt (prompt cut from the
    left when the pair is longer than ``max_length``): the reference scorer's pass."""
    from ..embed.reference import SUM, sequence_logps

    return sequence_logps(model, tok, prompts, completions, max_length=max_length,
                          batch_size=batch_size)[:, SUM].astype(float).tolist()


def preference_eval(policy: Any, base: Any, tok: Any, pairs: list[dict[str, str]], *,
                    beta: float, max_length: int,
                    return_margins: bool = False) -> dict[str, Any]:
    """The trained policy's preference accuracy (implicit reward ``β·log π/π_ref`` of
    chosen above rejected, the base model as reference), its length-balanced accuracy,
    mean margin and DPO loss on the pairs, next to the base model's own (log-likelihood of
    chosen above rejected) and the length rule's accuracy."""
    import math

    from ..evaluate.length import balanced_accuracy, length_baseline

    prompts = [p["prompt"] for p in pairs]
    pc = _logps(policy, tok, prompts, [p["chosen"] for p in pairs], max_length)
    pr = _logps(policy, tok, prompts, [p["rejected"] for p in pairs], max_length)
    bc = _logps(base, tok, prompts, [p["chosen"] for p in pairs], max_length)
    br = _logps(base, tok, prompts, [p["rejected"] for p in pairs], max_length)
    margins = [beta * ((a - b) - (c - d)) for a, b, c, d in zip(pc, bc, pr, br, strict=True)]
    n = len(pairs)
    length_diff = [len(p["chosen"]) - len(p["rejected"]) for p in pairs]
    balanced = balanced_accuracy([m > 0 for m in margins], length_diff)
    out = {
        "pairs": n,
        "policy": {"reward_accuracy": sum(m > 0 for m in margins) / n,
                   "balanced_reward_accuracy": balanced["balanced_accuracy"],
                   "n_min_side": balanced["n_min_side"],
                   "reward_margin_mean": sum(margins) / n,
                   # the DPO objective on held-out pairs: −log σ(margin)
                   "eval_loss": sum(math.log1p(math.exp(-m)) if m > -30 else -m
                                    for m in margins) / n,
                   "logp_accuracy": sum(a > b for a, b in zip(pc, pr, strict=True)) / n},
        "base": {"logp_accuracy": sum(a > b for a, b in zip(bc, br, strict=True)) / n,
                 "logp_margin_mean": sum(a - b for a, b in zip(bc, br, strict=True)) / n},
        "length": length_baseline(length_diff),
    }
    if return_margins:
        out["margins"] = margins
    return out


def plot_history(history: list[dict[str, Any]], path: Path) -> None:
    """Loss, reward margin and reward accuracy over training steps."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = [k for k in ("loss", "rewards/margins", "rewards/accuracies", "kl")
            if any(k in h for h in history)]
    fig, axes = plt.subplots(1, max(len(keys), 1), figsize=(4 * max(len(keys), 1), 3.2),
                             dpi=110, squeeze=False)
    for ax, k in zip(axes[0], keys, strict=False):
        pts = [(h["step"], h[k]) for h in history if k in h]
        ax.plot([p[0] for p in pts], [p[1] for p in pts], marker=".")
        ax.set_title(k)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
