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
    prompt (the completion is what is scored). Rows whose (cut) prompts are the same token
    sequence — a pair's chosen and rejected answer — share one pass over the prompt: the
    prompt runs once and each completion continues from its cached keys and values (on HH,
    70% of the tokens of a pair-by-pair pass). Batches are formed longest first, so padding
    is low; the rows come back in input order."""
    import torch

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
    decoder, head = _split(model)
    with torch.inference_mode():
        if decoder is None:  # a model without the split: whole sequences, its own forward
            _score_whole(model, seqs, n_comp, pad, batch_size, out)
        else:
            _score_shared(decoder, head, seqs, n_comp, pad, batch_size, out)
    return out


def _right_padded(rows: list[list[int]], pad: int) -> tuple[Any, Any]:
    """``(ids, mask)`` of token rows right-padded to the longest (a pad never precedes a
    real token)."""
    import torch

    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for j, r in enumerate(rows):
        ids[j, :len(r)] = torch.tensor(r)
        mask[j, :len(r)] = 1
    return ids, mask


def _store(out: np.ndarray, i: int, logps: Any) -> None:
    total = float(logps.sum())
    out[i] = (total, total / len(logps), len(logps))


def _score_whole(model: Any, seqs: list[list[int]], n_comp: list[int], pad: int,
                 batch_size: int, out: np.ndarray) -> None:
    import torch

    device = next(model.parameters()).device
    order = sorted(range(len(seqs)), key=lambda i: -len(seqs[i]))
    for start in range(0, len(order), batch_size):
        rows = order[start:start + batch_size]
        ids, mask = _right_padded([seqs[i] for i in rows], pad)
        ids, mask = ids.to(device), mask.to(device)
        logits = model(input_ids=ids, attention_mask=mask).logits
        for j, i in enumerate(rows):
            end = len(seqs[i]) - 1
            picked = logits[j, end - n_comp[i]:end].float()
            target = ids[j, end - n_comp[i] + 1:end + 1]
            _store(out, i, torch.log_softmax(picked, -1).gather(-1, target[:, None])[:, 0])


#: prompts whose keys and values are held at once (≈ 46 KB a token for SmolLM2-135M fp32:
#: 256 prompts of 200 tokens ≈ 2.4 GB at most)
_PROMPTS_HELD = 256


def _cache_arg(decoder: Any) -> str:
    """The name of a forward's key/value cache argument: ``cache`` in transformers 5
    (``past_key_values`` is deprecated there, to go in 5.40), ``past_key_values`` before."""
    import inspect

    params = inspect.signature(type(decoder).forward).parameters
    return "cache" if "cache" in params else "past_key_values"


def _score_shared(decoder: Any, head: Any, seqs: list[list[int]], n_comp: list[int],
                  pad: int, batch_size: int, out: np.ndarray) -> None:
    """Rows grouped by their prompt tokens. Per slice of prompts: the prompts in batches
    sorted by their length, each run once and its keys and values kept; then the
    completions in batches sorted by *their* length, each continuing from its prompt's
    cache (left-padded to the batch's longest prompt: padding there costs only attention,
    not the per-token layers)."""
    groups: dict[tuple[int, ...], list[int]] = {}
    for i, ids in enumerate(seqs):
        groups.setdefault(tuple(ids[:len(ids) - n_comp[i]]), []).append(i)
    todo = sorted(groups.items(), key=lambda kv: -len(kv[0]))
    for start in range(0, len(todo), _PROMPTS_HELD):
        part = todo[start:start + _PROMPTS_HELD]
        prompts = _run_prompts(decoder, [list(p) for p, _ in part], pad, batch_size)
        rows = sorted(((g, i) for g, (_, members) in enumerate(part) for i in members),
                      key=lambda gi: -n_comp[gi[1]])
        for at in range(0, len(rows), batch_size):
            _run_completions(decoder, head, rows[at:at + batch_size], prompts, seqs, n_comp,
                             pad, out)


def _run_prompts(decoder: Any, prompts: list[list[int]], pad: int,
                 batch_size: int) -> list[tuple[list[tuple[Any, Any]], Any]]:
    """Per prompt (longest first): its keys and values per layer and its last hidden
    state (which predicts a completion's first token)."""

    device = next(decoder.parameters()).device
    kept: list[tuple[list[tuple[Any, Any]], Any]] = []
    for at in range(0, len(prompts), batch_size):
        batch = prompts[at:at + batch_size]
        ids, mask = _right_padded(batch, pad)
        o = decoder(input_ids=ids.to(device), attention_mask=mask.to(device), use_cache=True)
        past = o.cache if _cache_arg(decoder) == "cache" else o.past_key_values
        layers = [(layer[0], layer[1]) for layer in past]
        for j, p in enumerate(batch):
            kept.append(([(k[j, :, :len(p)], v[j, :, :len(p)]) for k, v in layers],
                         o.last_hidden_state[j, len(p) - 1]))
    return kept


def _run_completions(decoder: Any, head: Any, rows: list[tuple[int, int]],
                     prompts: list[tuple[list[tuple[Any, Any]], Any]],
                     seqs: list[list[int]], n_comp: list[int], pad: int,
                     out: np.ndarray) -> None:
    import torch
    from transformers import DynamicCache

    device = next(decoder.parameters()).device
    lens = [prompts[g][0][0][0].shape[1] for g, _ in rows]
    width = max(lens)
    layers = []
    for layer in range(len(prompts[rows[0][0]][0])):
        ks, vs = [], []
        for (g, _), n in zip(rows, lens, strict=True):
            k, v = prompts[g][0][layer]
            # left-padded: the keys carry their positions (rotary) already
            ks.append(torch.nn.functional.pad(k, (0, 0, width - n, 0)))
            vs.append(torch.nn.functional.pad(v, (0, 0, width - n, 0)))
        layers.append((torch.stack(ks), torch.stack(vs)))
    cache = DynamicCache(ddp_cache_data=layers)
    tails = [seqs[i][len(seqs[i]) - n_comp[i]:] for _, i in rows]
    ids, c_mask = _right_padded(tails, pad)
    c_width = ids.shape[1]
    # each prompt's cache is left-padded to ``width``: its real part ends where the
    # completion starts
    p_mask = (torch.arange(width)[None, :] >= width - torch.tensor(lens)[:, None]).long()
    mask = torch.cat([p_mask, c_mask], dim=1)
    positions = torch.tensor(lens)[:, None] + torch.arange(c_width)[None, :]
    hidden = decoder(input_ids=ids.to(device), attention_mask=mask.to(device),
                     position_ids=positions.to(device), use_cache=True,
                     **{_cache_arg(decoder): cache}).last_hidden_state
    # the vocabulary projection only where a completion token is predicted
    vectors = torch.cat([torch.cat([prompts[g][1][None], hidden[r, :len(tails[r]) - 1]])
                         for r, (g, _) in enumerate(rows)])
    targets = torch.cat([torch.tensor(t) for t in tails]).to(device)
    logp = torch.log_softmax(head(vectors).float(), -1).gather(-1, targets[:, None])[:, 0]
    at = 0
    for (_, i), tail in zip(rows, tails, strict=True):
        _store(out, i, logp[at:at + len(tail)])
        at += len(tail)


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
        # a prompt's completions side by side (a pair's two answers share one pass over
        # their prompt), prompts of like length together (little padding)
        order = sorted(range(len(pairs)), key=lambda i: (len(pairs[i][0]), pairs[i][0]))
        out = np.empty((len(pairs), 3), dtype=np.float32)
        step = max(self.batch_size * 8, 1)  # progress every few batches
        for start in range(0, len(pairs), step):
            chunk = order[start:start + step]
            out[chunk] = sequence_logps(
                self._model, self._tokenizer, [pairs[i][0] for i in chunk],
                [pairs[i][1] for i in chunk], max_length=self.max_length,
                batch_size=self.batch_size)
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
