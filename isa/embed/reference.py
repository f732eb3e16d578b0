"""The reference model's log-probabilities: how likely a causal LM finds each completion
given its prompt. The DPO-native selectors rank pairs by them (``implicit_margin``,
``alignment_potential``, ``margin_bayes``) and the DPO yardstick scores with them.

``ReferenceScorer`` is an :class:`~isa.embed.base.Encoder` whose "embedding" of a
``(prompt, completion)`` pair is ``[sum log p, mean log p per token, tokens]``: so the
values are content-addressed and cached exactly as embeddings are (the embedding caches,
the service's store), under a name of their own, and a second pass over the same texts
runs no model. ``sequence_logps`` is the one forward pass; training's evaluation uses it
too.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ConfigError, EncoderError
from .base import Encoder, ProgressFn
from .device import resolve_device, resolve_precision, torch_dtype
from .models import SMOLLM2, causal_model_folder, resolve_causal_model

#: joins a prompt and its completion into the one text the cache is keyed by (a
#: character no preference text carries: the ASCII record separator)
PAIR_SEP = "\x1e"
#: the columns of a reference vector
SUM, MEAN, TOKENS = 0, 1, 2

_LOADING = threading.RLock()


def pair_text(prompt: str, completion: str) -> str:
    return f"{prompt}{PAIR_SEP}{completion}"


def split_pair_text(text: str) -> tuple[str, str]:
    prompt, sep, completion = text.rpartition(PAIR_SEP)
    if not sep:
        raise ConfigError("a reference text is a prompt and a completion joined by "
                          "pair_text()")
    return prompt, completion


def sequence_logps(model: Any, tokenizer: Any, prompts: Sequence[str],
                   completions: Sequence[str], *, max_length: int = 512,
                   batch_size: int = 8) -> np.ndarray:
    """``(n, 3)``: each completion's summed and per-token mean log-probability given its
    prompt, and its token count. A pair longer than ``max_length`` loses the start of its
    prompt (the completion is what is scored). Batches are formed longest first, so
    padding is low; the rows come back in input order."""
    import torch

    device = next(model.parameters()).device
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None \
        else tokenizer.eos_token_id
    seqs, n_comp = [], []
    for p, c in zip(prompts, completions, strict=True):
        # an empty prompt still conditions the first completion token on a start token
        ids_p = tokenizer(p)["input_ids"] or [_start_token(tokenizer, pad)]
        ids_c = tokenizer(c, add_special_tokens=False)["input_ids"] or [tokenizer.eos_token_id]
        ids = (ids_p + ids_c)[-max_length:]
        seqs.append(ids)
        n_comp.append(min(len(ids_c), len(ids) - 1))
    out = np.zeros((len(seqs), 3), dtype=np.float32)
    order = sorted(range(len(seqs)), key=lambda i: -len(seqs[i]))
    with torch.inference_mode():
        for start in range(0, len(order), batch_size):
            rows = order[start:start + batch_size]
            width = len(seqs[rows[0]])
            input_ids = torch.full((len(rows), width), pad, dtype=torch.long)
            mask = torch.zeros((len(rows), width), dtype=torch.long)
            for j, i in enumerate(rows):
                input_ids[j, :len(seqs[i])] = torch.tensor(seqs[i])
                mask[j, :len(seqs[i])] = 1
            ids, m = input_ids.to(device), mask.to(device)
            # the vocabulary projection and its softmax only where a completion token is
            # predicted: a prompt's positions (most of a dialogue) need the body only
            where = [(j, range(len(seqs[i]) - 1 - n_comp[i], len(seqs[i]) - 1))
                     for j, i in enumerate(rows)]
            token_logp = _completion_logps(model, ids, m, where)
            at = 0
            for (_, span), i in zip(where, rows, strict=True):
                k = len(span)
                total = float(token_logp[at:at + k].sum())
                at += k
                out[i] = (total, total / n_comp[i], n_comp[i])
    return out


def _completion_logps(model: Any, ids: Any, mask: Any,
                      where: list[tuple[int, range]]) -> Any:
    """The log-probability of each token predicted at the positions ``where`` names (row,
    the positions whose next token is a completion token), in that order, flat."""
    import torch

    rows = torch.tensor([j for j, span in where for _ in span], dtype=torch.long)
    cols = torch.tensor([p for _, span in where for p in span], dtype=torch.long)
    targets = ids[rows, cols + 1]
    decoder, head = _split(model)
    if decoder is None:  # a model without the split: the whole sequence's logits
        logits = model(input_ids=ids, attention_mask=mask).logits
        picked = logits[rows, cols].float()
    else:
        hidden = decoder(input_ids=ids, attention_mask=mask).last_hidden_state
        picked = head(hidden[rows, cols]).float()
    return torch.log_softmax(picked, dim=-1).gather(-1, targets.unsqueeze(-1)).squeeze(-1)


def _split(model: Any) -> tuple[Any, Any]:
    """(the transformer body, the vocabulary projection) of a causal LM, or (None, None)
    when it does not expose them (``get_decoder``/``get_output_embeddings``)."""
    try:
        decoder, head = model.get_decoder(), model.get_output_embeddings()
    except (AttributeError, NotImplementedError):
        return None, None
    config = getattr(model, "config", None)
    # a model whose forward changes the logits after the projection (Gemma's soft cap)
    # keeps its own forward
    if decoder is None or head is None or decoder is model or getattr(
            config, "final_logit_softcapping", None):
        return None, None
    return decoder, head


def _start_token(tokenizer: Any, pad: int) -> int:
    bos = tokenizer.bos_token_id
    return bos if bos is not None else pad


class ReferenceScorer(Encoder):
    """The causal LM's log-probabilities of completions, as cacheable 3-vectors.

    Args:
        model: ``"SmolLM2-135M-Instruct"`` (packaged GGUF, de-quantised and cached), a
            ``.gguf`` file, or a local transformers folder.
        device, precision: as for the encoders (``auto``: a GPU when present; bf16 where
            fast, else float32).
        batch_size: pairs per forward pass.
        max_length: tokens of prompt + completion kept (the prompt's start is cut).
        cache_dir: where de-quantised models are kept.
    """

    dim = 3

    def __init__(self, model: str = SMOLLM2, *, device: str = "auto", precision: str = "auto",
                 batch_size: int = 8, max_length: int = 512,
                 cache_dir: Path | None = None) -> None:
        self.device = resolve_device(device)
        self.precision = resolve_precision(precision, self.device)
        self.batch_size, self.max_length = batch_size, max_length
        self._model_arg, self._cache_dir = model, cache_dir
        self._model = self._tokenizer = None
        folder = causal_model_folder(model, cache_dir)
        self.name = f"ref:{folder.name}:{self.precision}:len{max_length}:logp"

    @property
    def loaded(self) -> bool:
        return self._model is not None

    def _load(self) -> None:
        with _LOADING:  # threads sharing this scorer load it once
            if self._model is not None:
                return
            from transformers import AutoModelForCausalLM, AutoTokenizer

            folder = resolve_causal_model(self._model_arg, self._cache_dir)
            try:
                tokenizer = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
                model = AutoModelForCausalLM.from_pretrained(
                    str(folder), local_files_only=True,
                    dtype=torch_dtype(self.precision)).to(self.device).eval()
            except Exception as exc:
                raise EncoderError(f"cannot load the reference model {self._model_arg!r}: "
                                   f"{exc}", model=self._model_arg) from exc
            if tokenizer.pad_token is None:
                tokenizer.pad_token = tokenizer.eos_token
            self._tokenizer, self._model = tokenizer, model

    def encode(self, texts: Sequence[str], *, progress: ProgressFn | None = None) -> np.ndarray:
        self._load()
        pairs = [split_pair_text(t) for t in texts]
        out = np.empty((len(pairs), 3), dtype=np.float32)
        step = max(self.batch_size * 8, 1)  # progress every few batches
        for start in range(0, len(pairs), step):
            chunk = pairs[start:start + step]
            out[start:start + len(chunk)] = sequence_logps(
                self._model, self._tokenizer, [p for p, _ in chunk], [c for _, c in chunk],
                max_length=self.max_length, batch_size=self.batch_size)
            if progress is not None:
                progress(start + len(chunk), len(pairs))
        return out


def reference_columns(source: Any, row_ids: Sequence[str], scorer: Encoder, *,
                      cache: Any = None, progress: ProgressFn | None = None,
                      ) -> tuple[dict[str, np.ndarray], Any]:
    """The reference columns the DPO-native selectors read, one value per pair-level
    unit (``row_ids``, in unit order), from one streaming pass over ``source`` (a
    ``PreferenceFile``); what ``cache`` holds is not scored again. Returns the columns
    and the ``EmbedStats`` of the scoring."""
    from ..ingest.records import render_text
    from ..select.dpo_native import (
        REF_LOGP_CHOSEN,
        REF_LOGP_REJECTED,
        REF_MEAN_LOGP_CHOSEN,
        REF_MEAN_LOGP_REJECTED,
    )
    from .base import complete_embeddings, lookup_embeddings

    wanted = {r: i for i, r in enumerate(row_ids)}
    texts: list[str] = [""] * (2 * len(row_ids))
    found = 0
    for ex in source.iter_examples():
        i = wanted.get(ex.row_id)
        if i is None:
            continue
        if ex.kind != "pair":
            raise ConfigError("reference log-probabilities are for pairs: this data is "
                              "unpaired (KTO)", code="needs_pairs")
        prompt = render_text(ex.prompt)
        texts[2 * i] = pair_text(prompt, render_text(ex.chosen or ""))
        texts[2 * i + 1] = pair_text(prompt, render_text(ex.rejected or ""))
        found += 1
    if found != len(row_ids):
        raise ConfigError("reference log-probabilities are per pair: select at the pair "
                          "level", code="needs_pairs")
    lookup = lookup_embeddings(texts, scorer.name, cache)
    values, stats = complete_embeddings(texts, lookup, scorer, cache=cache, progress=progress)
    chosen, rejected = values[0::2].astype(np.float64), values[1::2].astype(np.float64)
    return {REF_LOGP_CHOSEN: chosen[:, SUM], REF_LOGP_REJECTED: rejected[:, SUM],
            REF_MEAN_LOGP_CHOSEN: chosen[:, MEAN],
            REF_MEAN_LOGP_REJECTED: rejected[:, MEAN]}, stats
