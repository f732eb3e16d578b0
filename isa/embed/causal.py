"""Causal-LM last-token embeddings, as in the ISA paper (Llama-3-8B-Instruct there)."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..errors import ConfigError, EncoderError
from .base import Encoder, ProgressFn, fit_to_window, l2_normalize
from .device import resolve_device, resolve_precision, torch_dtype
from .models import SMOLLM2, causal_model_folder, resolve_causal_model

#: one load at a time in a process (a load is seconds of CPU and a copy of the weights)
_LOADING = threading.RLock()


class CausalLMEncoder(Encoder):
    """The final layer's hidden state at each text's last token.

    Args:
        model: ``"SmolLM2-135M-Instruct"`` (packaged GGUF, de-quantised and cached), a
            ``.gguf`` file, or a local transformers folder.
        device, precision: as for :class:`SentenceTransformerEncoder`.
        batch_size: texts per forward pass (texts arrive longest first, so padding is low).
        max_length: truncation in tokens.
        truncation_side: ``"left"`` (default) keeps the end of a long text, where the
            completion is.
        normalize: L2-normalise (off by default: the paper uses raw hidden states).
        cache_dir: where de-quantised models are kept.
    """

    def __init__(self, model: str = SMOLLM2, *, device: str = "auto", precision: str = "auto",
                 batch_size: int = 8, max_length: int = 512, truncation_side: str = "left",
                 normalize: bool = False,
                 cache_dir: Path | None = None) -> None:
        # The name (the cache key) needs only the model folder's name: the weights load,
        # and a packaged GGUF is de-quantised, on the first texts the cache lacks.
        self.device = resolve_device(device)
        self.precision = resolve_precision(precision, self.device)
        self.batch_size = batch_size
        self.max_length = max_length
        self.normalize = normalize
        if truncation_side not in ("left", "right"):
            raise ConfigError("truncation_side must be 'left' or 'right'")
        self._model_arg, self._cache_dir = model, cache_dir
        self._truncation_side = truncation_side
        folder = causal_model_folder(model, cache_dir)
        self._model = self._tokenizer = None
        self.name = (f"clm:{folder.name}:{self.precision}:len{max_length}"
                     f":{truncation_side}"
                     f":last{':norm' if normalize else ''}")

    @property
    def loaded(self) -> bool:
        return self._model is not None

    @property
    def model(self):  # noqa: ANN201 - a transformers model, imported lazily
        if self._model is None:
            self._load()
        return self._model

    @property
    def tokenizer(self):  # noqa: ANN201
        if self._tokenizer is None:
            self._load()
        return self._tokenizer

    @property
    def dim(self) -> int:  # type: ignore[override]
        return int(self.model.config.hidden_size)

    def _load(self) -> None:
        """De-quantise (once per machine) and load the tokenizer and the base model."""
        with _LOADING:  # threads sharing this encoder load it once
            if self._model is None:
                self._load_now()

    def _load_now(self) -> None:
        import torch
        from transformers import AutoModel, AutoTokenizer

        folder = resolve_causal_model(self._model_arg, self._cache_dir)
        try:
            tokenizer = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
            # The base model only: the LM head's vocabulary projection is not needed.
            model = AutoModel.from_pretrained(
                str(folder), local_files_only=True, dtype=torch_dtype(self.precision)
            ).to(self.device).eval()
        except Exception as exc:
            raise EncoderError(f"cannot load causal LM {self._model_arg!r}: {exc}",
                               model=self._model_arg) from exc
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token
        tokenizer.padding_side = "right"
        tokenizer.truncation_side = self._truncation_side
        self._torch = torch
        self._tokenizer, self._model = tokenizer, model

    def encode(self, texts: Sequence[str], *, progress: ProgressFn | None = None) -> np.ndarray:
        model, tokenizer = self.model, self.tokenizer  # loads on the first uncached texts
        torch = self._torch
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        with torch.inference_mode():
            for start in range(0, len(texts), self.batch_size):
                batch = fit_to_window(texts[start:start + self.batch_size],
                                      self.max_length, self._truncation_side)
                enc = tokenizer(batch, return_tensors="pt", padding=True, truncation=True,
                                max_length=self.max_length).to(self.device)
                hidden = model(**enc).last_hidden_state
                last = enc["attention_mask"].sum(dim=1) - 1
                vecs = hidden[torch.arange(hidden.shape[0], device=hidden.device), last]
                vecs = vecs.float().cpu().numpy()
                if self.normalize:
                    l2_normalize(vecs)
                out[start:start + len(batch)] = vecs
                if progress is not None:
                    progress(start + len(batch), len(texts))
        return out

    def count_tokens(self, texts: Sequence[str]) -> int:
        enc = self.tokenizer(fit_to_window(texts, self.max_length, self._truncation_side),
                             truncation=True, max_length=self.max_length)
        return sum(len(ids) for ids in enc["input_ids"])
