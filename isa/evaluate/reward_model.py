"""A second evaluator, stronger than the linear probe: a small reward model fine-tuned on
a subset and scored on held-out pairs the same way (accuracy, length-balanced accuracy).

The encoder (all-MiniLM-L6-v2 by default, from the packaged weights) is fine-tuned end
to end with a scalar head on its mean-pooled output, on the Bradley–Terry loss
``−log σ(r(chosen) − r(rejected))`` — the objective of TRL's ``RewardTrainer``, written
out here because TRL drops (rather than truncates) pairs longer than ``max_length`` and
multi-turn HH dialogues are long: texts are cut from the left, keeping the answers.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..embed.device import resolve_device
from ..embed.sentence import DEFAULT_SENTENCE_MODEL, resolve_sentence_model


class RewardModel:
    """Fine-tune a small encoder as a reward model.

    Args:
        model: a packaged sentence-transformers name or a local folder.
        epochs: passes over the training pairs.
        learning_rate: of the encoder; the head learns ``head_learning_rate``.
        batch_size: pairs per step.
        max_length: tokens per text (cut from the left: the answer is kept).
        seed: initialisation of the head and the order of the pairs.
        device: ``auto`` (CUDA when present), ``cpu``, ``cuda:N``.
    """

    def __init__(self, model: str = DEFAULT_SENTENCE_MODEL, *, epochs: int = 3,
                 learning_rate: float = 5e-5, head_learning_rate: float = 1e-3,
                 batch_size: int = 16, max_length: int = 128, seed: int = 0,
                 device: str = "auto") -> None:
        self.model = model
        self.epochs = epochs
        self.learning_rate = learning_rate
        self.head_learning_rate = head_learning_rate
        self.batch_size = batch_size
        self.max_length = max_length
        self.seed = seed
        self.device = device

    def fit(self, chosen: Sequence[str], rejected: Sequence[str]) -> RewardModel:
        """Train on pairs of full texts (prompt + answer)."""
        import torch
        from transformers import AutoModel, AutoTokenizer

        if len(chosen) != len(rejected) or not chosen:
            raise ValueError("fit needs as many chosen as rejected texts, at least one")
        torch.manual_seed(self.seed)
        self.device_ = resolve_device(self.device)
        path = resolve_sentence_model(self.model)
        self.tokenizer_ = AutoTokenizer.from_pretrained(path)
        self.tokenizer_.truncation_side = "left"
        self.encoder_ = AutoModel.from_pretrained(path).to(self.device_)
        self.head_ = torch.nn.Linear(self.encoder_.config.hidden_size, 1).to(self.device_)
        torch.nn.init.zeros_(self.head_.weight)
        torch.nn.init.zeros_(self.head_.bias)
        opt = torch.optim.AdamW([
            {"params": self.encoder_.parameters(), "lr": self.learning_rate},
            {"params": self.head_.parameters(), "lr": self.head_learning_rate}])
        rng = np.random.default_rng(self.seed)
        self.encoder_.train()
        self.losses_: list[float] = []
        for _ in range(self.epochs):
            order = rng.permutation(len(chosen))
            for start in range(0, len(order), self.batch_size):
                idx = order[start:start + self.batch_size]
                r = self._rewards([chosen[i] for i in idx] + [rejected[i] for i in idx])
                loss = -torch.nn.functional.logsigmoid(r[:len(idx)] - r[len(idx):]).mean()
                opt.zero_grad()
                loss.backward()
                opt.step()
                self.losses_.append(float(loss.detach()))
        self.encoder_.eval()
        return self

    def _rewards(self, texts: list[str]):  # noqa: ANN202 - a torch tensor
        enc = self.tokenizer_(texts, truncation=True, max_length=self.max_length,
                              padding=True, return_tensors="pt").to(self.device_)
        hidden = self.encoder_(**enc).last_hidden_state
        mask = enc["attention_mask"].unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1)
        return self.head_(pooled).squeeze(-1)

    def rewards(self, texts: Sequence[str]) -> np.ndarray:
        """The reward of each text."""
        import torch

        out = []
        with torch.inference_mode():
            for start in range(0, len(texts), 64):
                out.append(self._rewards(list(texts[start:start + 64])).float().cpu().numpy())
        return np.concatenate(out) if out else np.empty(0)

    def margins(self, chosen: Sequence[str], rejected: Sequence[str]) -> np.ndarray:
        """``r(chosen) − r(rejected)`` per pair."""
        return self.rewards(chosen) - self.rewards(rejected)
