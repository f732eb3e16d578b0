"""The ``Encoder`` interface and the de-duplicating ``embed_texts`` stage."""

from __future__ import annotations

import hashlib
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

#: progress callback: (done, total) in texts
ProgressFn = Callable[[int, int], None]


class Encoder(ABC):
    """Turns texts into a float32 matrix, one row per text.

    ``name`` identifies the model *and* every setting that changes its output
    (precision, truncation, pooling), so it is safe as part of a cache key. It is known
    without loading the model: the packaged encoders load their weights on the first
    ``encode`` (a run whose every text is cached loads none).
    """

    name: str
    dim: int

    @abstractmethod
    def encode(self, texts: Sequence[str], *, progress: ProgressFn | None = None) -> np.ndarray:
        """Embed ``texts`` in order; returns an ``(len(texts), dim)`` float32 array."""

    def count_tokens(self, texts: Sequence[str]) -> int:
        """Tokens the encoder actually reads (after truncation); for throughput reports."""
        raise NotImplementedError


#: characters kept per token of an encoder's window before tokenising. English text runs
#: 3-5 characters a token; 32 leaves room for whitespace runs and markup, so for any text
#: but a pathological one the cut changes no token the encoder reads, while a 1M-character
#: field costs the tokenizer 8k characters instead of a million (and gigabytes).
CHARS_PER_TOKEN = 32


def fit_to_window(texts: Sequence[str], max_tokens: int, side: str = "left") -> list[str]:
    """Each text cut to the characters an encoder reading ``max_tokens`` tokens can use:
    the end for ``side="left"`` truncation (the encoders' default), else the start."""
    keep = max_tokens * CHARS_PER_TOKEN
    if side == "left":
        return [t if len(t) <= keep else t[-keep:] for t in texts]
    return [t if len(t) <= keep else t[:keep] for t in texts]


def l2_normalize(vecs: np.ndarray) -> np.ndarray:
    """Scale rows to unit length in place (float32), leaving zero rows at zero."""
    vecs /= np.maximum(np.linalg.norm(vecs, axis=1, keepdims=True), 1e-12)
    return vecs


def text_key(text: str) -> bytes:
    """Content address of a text (16 bytes of BLAKE2b)."""
    return hashlib.blake2b(text.encode("utf-8"), digest_size=16).digest()


class EmbeddingCache(ABC):
    """Where already-computed embeddings live, keyed by (encoder name, text key)."""

    @abstractmethod
    def get_many(self, encoder: str, keys: Sequence[bytes]) -> dict[bytes, np.ndarray]: ...

    @abstractmethod
    def put_many(self, encoder: str, items: dict[bytes, np.ndarray]) -> None: ...


class MemoryEmbeddingCache(EmbeddingCache):
    """A process-local cache: a second selection over the same texts embeds nothing."""

    def __init__(self) -> None:
        self._data: dict[tuple[str, bytes], np.ndarray] = {}

    def get_many(self, encoder: str, keys: Sequence[bytes]) -> dict[bytes, np.ndarray]:
        return {k: self._data[(encoder, k)] for k in keys if (encoder, k) in self._data}

    def put_many(self, encoder: str, items: dict[bytes, np.ndarray]) -> None:
        for k, v in items.items():
            self._data[(encoder, k)] = v


class DiskEmbeddingCache(EmbeddingCache):
    """Embeddings kept in one ``.npz`` file per encoder under a folder (for the CLI and
    benchmarks; the service shares its cache through Redis). Call ``save()`` to persist."""

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)
        self._data: dict[str, dict[bytes, np.ndarray]] = {}
        self._dirty: set[str] = set()

    def _file(self, encoder: str) -> Path:
        return self.folder / (hashlib.blake2b(encoder.encode(), digest_size=8).hexdigest()
                              + ".npz")

    def _load(self, encoder: str) -> dict[bytes, np.ndarray]:
        if encoder not in self._data:
            self._data[encoder] = {}
            path = self._file(encoder)
            if path.is_file():
                with np.load(path) as npz:
                    self._data[encoder] = dict(zip((k.tobytes() for k in npz["keys"]),
                                                   npz["vectors"], strict=True))
        return self._data[encoder]

    def get_many(self, encoder: str, keys: Sequence[bytes]) -> dict[bytes, np.ndarray]:
        data = self._load(encoder)
        return {k: data[k] for k in keys if k in data}

    def put_many(self, encoder: str, items: dict[bytes, np.ndarray]) -> None:
        self._load(encoder).update(items)
        self._dirty.add(encoder)

    def save(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        for encoder in self._dirty:
            data = self._data[encoder]
            # raw bytes as uint8 rows: numpy's "S" strings would drop trailing NULs
            keys = np.frombuffer(b"".join(data), dtype=np.uint8).reshape(len(data), 16)
            vectors = np.stack(list(data.values())) if data else np.empty((0, 0), np.float32)
            tmp = self._file(encoder).with_suffix(".tmp.npz")
            np.savez(tmp, keys=keys, vectors=vectors)
            tmp.replace(self._file(encoder))
        self._dirty.clear()


@dataclass(slots=True)
class EmbedStats:
    texts: int  # texts asked for
    unique: int  # distinct texts among them
    cached: int  # distinct texts found in the cache
    embedded: int  # distinct texts the encoder ran on

    def to_dict(self) -> dict[str, int]:
        return {"texts": self.texts, "unique": self.unique, "cached": self.cached,
                "embedded": self.embedded}


@dataclass(slots=True)
class EmbeddingLookup:
    """The first half of embedding: which distinct texts the cache already holds.

    Splitting it from the encoding lets a caller look the cache up once and then decide
    how to encode what is missing (in this process, or fanned out to other workers).
    """

    encoder: str  # the encoder name the cache was asked under
    keys: list[bytes]  # per text
    unique_keys: list[bytes]  # distinct keys, in first-seen order
    first: list[int]  # per distinct key: the index of its first text
    position: dict[bytes, int]  # distinct key -> its index in unique_keys
    found: dict[bytes, np.ndarray]  # distinct keys the cache held

    def todo(self, texts: Sequence[str]) -> list[int]:
        """Distinct-key indices the cache lacks, in encoding order: longest text first,
        ties by key — content-defined, so batches (and the exact floats) do not depend
        on the order of the texts."""
        missing = [j for j, k in enumerate(self.unique_keys) if k not in self.found]
        return sorted(missing, key=lambda j: (-len(texts[self.first[j]]), self.unique_keys[j]))

    def missing_texts(self, texts: Sequence[str]) -> list[str]:
        """The distinct texts to encode, in encoding order."""
        return [texts[self.first[j]] for j in self.todo(texts)]


#: texts encoded between two stores of their vectors into the cache (a power of two: a
#: multiple of any batch size the encoders use)
CHECKPOINT_TEXTS = 512


def lookup_embeddings(texts: Sequence[str], encoder_name: str,
                      cache: EmbeddingCache | None) -> EmbeddingLookup:
    """Hash every text and ask the cache, once, for each distinct one."""
    keys = [text_key(t) for t in texts]
    seen: dict[bytes, int] = {}
    first: list[int] = []
    for i, k in enumerate(keys):
        if k not in seen:
            seen[k] = len(first)
            first.append(i)
    unique_keys = [keys[i] for i in first]
    found = cache.get_many(encoder_name, unique_keys) if cache is not None else {}
    return EmbeddingLookup(encoder_name, keys, unique_keys, first, seen, found)


def complete_embeddings(texts: Sequence[str], lookup: EmbeddingLookup, encoder: Encoder, *,
                        cache: EmbeddingCache | None = None,
                        progress: ProgressFn | None = None) -> tuple[np.ndarray, EmbedStats]:
    """The second half: encode what the lookup did not find (storing it in ``cache``)
    and assemble one row per text."""
    if lookup.encoder != encoder.name:
        raise ValueError(f"the lookup was made for encoder {lookup.encoder!r}, "
                         f"not {encoder.name!r}")
    todo = lookup.todo(texts)
    # the width of a cached vector, so that a fully cached run never asks the encoder
    # (whose model loads on first use) anything but its name
    dim = len(next(iter(lookup.found.values()))) if lookup.found else encoder.dim
    unique = np.empty((len(lookup.unique_keys), dim), dtype=np.float32)
    for j, k in enumerate(lookup.unique_keys):
        if k in lookup.found:
            unique[j] = lookup.found[k]
    # with a cache, stored every CHECKPOINT_TEXTS texts: a process killed mid-way leaves
    # what it finished (a re-sent task embeds only the rest). A multiple of every batch
    # size, so the batches, and the floats, are the same as in one call.
    step = CHECKPOINT_TEXTS if cache is not None else max(len(todo), 1)
    for start in range(0, len(todo), step):
        part = todo[start:start + step]
        report = None if progress is None else \
            (lambda done, _total, at=start: progress(at + done, len(todo)))
        unique[part] = encoder.encode([texts[lookup.first[j]] for j in part],
                                      progress=report)
        if cache is not None:
            cache.put_many(encoder.name, {lookup.unique_keys[j]: unique[j] for j in part})
    if not todo and progress is not None:
        progress(0, 0)
    out = (unique[[lookup.position[k] for k in lookup.keys]] if lookup.keys
           else np.empty((0, dim), np.float32))
    return out, EmbedStats(len(texts), len(lookup.unique_keys), len(lookup.found), len(todo))


def embed_texts(
    texts: Sequence[str],
    encoder: Encoder,
    *,
    cache: EmbeddingCache | None = None,
    progress: ProgressFn | None = None,
) -> tuple[np.ndarray, EmbedStats]:
    """Embed ``texts``, running the encoder once per distinct text not in ``cache``."""
    lookup = lookup_embeddings(texts, encoder.name, cache)
    return complete_embeddings(texts, lookup, encoder, cache=cache, progress=progress)
