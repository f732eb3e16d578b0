"""Static embeddings: a per-token lookup table distilled from a sentence transformer.

model2vec's ``distill`` runs every token of the packaged all-MiniLM-L6-v2's vocabulary
through the transformer once (about a minute on two cores), reduces the vectors with PCA
and weights them by token frequency (SIF). Encoding a text is then a tokenisation and a
mean of table rows: no transformer at all, tens to hundreds of times the texts/s of the
sentence encoder on a CPU, at a quality cost measured in ``bench/results/encoding.md``.

The table is distilled on first use (or at image build, ``python -m isa.embed.static``)
and kept under the model cache folder; nothing comes from a hub.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import threading
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..errors import ConfigError, EncoderError
from .base import Encoder, ProgressFn, fit_to_window, l2_normalize
from .models import DEFAULT_MODEL_CACHE
from .sentence import DEFAULT_SENTENCE_MODEL, resolve_sentence_model

#: one distillation or load at a time in a process
_LOADING = threading.RLock()


def _is_static_folder(folder: Path) -> bool:
    """A folder model2vec saved (``model_type: model2vec``), not one to distill from."""
    try:
        import json

        return json.loads((folder / "config.json").read_text()).get("model_type") == "model2vec"
    except (OSError, ValueError, AttributeError):
        return False


def distilled_folder(model: str = DEFAULT_SENTENCE_MODEL, *, pca_dims: int = 256,
                     cache_dir: Path | None = None) -> Path:
    """Where the table distilled from ``model`` is kept (nothing is built)."""
    base = Path(model).name if Path(model).is_dir() else model
    return (cache_dir or DEFAULT_MODEL_CACHE) / f"static-{base}-pca{pca_dims}"


def distill_static(model: str = DEFAULT_SENTENCE_MODEL, *, pca_dims: int = 256,
                   cache_dir: Path | None = None) -> Path:
    """Distil ``model`` (a packaged sentence-transformers name or a local folder) into a
    static table once, and return its folder. Saved beside its place and renamed: a crash
    leaves no half-written table, and two processes racing both end with a whole one."""
    target = distilled_folder(model, pca_dims=pca_dims, cache_dir=cache_dir)
    if (target / "model.safetensors").is_file():
        return target
    source = resolve_sentence_model(model)
    from model2vec.distill import distill

    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=target.name + ".", dir=target.parent))
    try:
        # float32 table: the float16 default would change the vectors by ~1e-3
        static = distill(model_name=source, pca_dims=pca_dims, device="cpu",
                         quantize_to="float32")
        static.save_pretrained(str(tmp))
        os.replace(tmp, target)
    except OSError:
        shutil.rmtree(tmp, ignore_errors=True)
        if not (target / "model.safetensors").is_file():
            raise
    except Exception as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        raise EncoderError(f"cannot distil a static model from {model!r}: {exc}",
                           model=model) from exc
    return target


class StaticEncoder(Encoder):
    """Mean of static token vectors (model2vec), L2-normalised.

    Args:
        model: ``"all-MiniLM-L6-v2"`` (distilled from the packaged weights on first use), a
            local sentence-transformers folder to distil, or a folder model2vec saved.
        pca_dims: width of the distilled table (ignored for a saved model2vec folder).
        max_seq_length: tokens read per text; like the sentence encoder the *end* of a long
            text is kept (in prompt + completion texts the completion comes last).
        cache_dir: where distilled tables are kept (default ``~/.cache/isa-service/models``).
        chunk_size: texts between two progress reports.
        device, precision, batch_size: accepted for a uniform interface; a lookup table
            runs on the CPU in float32 whatever they say (precision must be ``auto`` or
            ``float32``).
    """

    def __init__(self, model: str = DEFAULT_SENTENCE_MODEL, *, pca_dims: int = 256,
                 max_seq_length: int | None = None, cache_dir: Path | None = None,
                 chunk_size: int = 4096, device: str = "auto", precision: str = "auto",
                 batch_size: int | None = None) -> None:
        del device, batch_size  # a table lookup: no device, no batches
        if precision not in ("auto", "float32"):
            raise ConfigError("the static encoder computes in float32 (precision 'auto' or "
                              f"'float32', not {precision!r})", code="invalid_encoder")
        if not 8 <= pca_dims <= 384:
            raise ConfigError(f"pca_dims must be in [8, 384], not {pca_dims}",
                              code="invalid_encoder")
        self.max_tokens = max_seq_length or 512
        if self.max_tokens < 1:
            raise ConfigError("max_seq_length must be positive", code="invalid_encoder")
        self.chunk_size = chunk_size
        self._model_arg, self._cache_dir, self._pca_dims = model, cache_dir, pca_dims
        folder = Path(model)
        self._saved = folder if folder.is_dir() and _is_static_folder(folder) else None
        if self._saved is None:
            resolve_sentence_model(model)  # fail now on an unknown model, not mid-job
        base = folder.name if folder.is_dir() else model
        width = "saved" if self._saved is not None else f"pca{pca_dims}"
        self.name = f"static:{base}:{width}:len{self.max_tokens}:left"
        self._model = None

    @property
    def loaded(self) -> bool:
        return self._model is not None

    @property
    def model(self):  # noqa: ANN201 - a model2vec StaticModel, imported lazily
        """The static model, distilled (first use on this machine) and loaded on demand."""
        if self._model is None:
            with _LOADING:
                if self._model is None:
                    self._model = self._load()
        return self._model

    @property
    def dim(self) -> int:  # type: ignore[override]
        return int(self.model.dim)

    def _load(self):  # noqa: ANN202
        from model2vec import StaticModel

        folder = self._saved or distill_static(self._model_arg, pca_dims=self._pca_dims,
                                               cache_dir=self._cache_dir)
        try:
            return StaticModel.from_pretrained(str(folder))
        except Exception as exc:
            raise EncoderError(f"cannot load static model {self._model_arg!r} from {folder}: "
                               f"{exc}", model=self._model_arg) from exc

    def _token_ids(self, texts: Sequence[str]) -> list[list[int]]:
        """The last ``max_tokens`` token ids of each text, the text cut to what the window
        can read before it is tokenised."""
        ids = self.model.tokenize(fit_to_window(texts, self.max_tokens, "left"))
        return [row[-self.max_tokens:] for row in ids]

    def _vectors(self, ids: list[list[int]]) -> np.ndarray:
        model = self.model
        table = model.embedding
        mapping = getattr(model, "token_mapping", None)
        weights = getattr(model, "weights", None)
        out = np.zeros((len(ids), table.shape[1]), dtype=np.float32)
        for i, row in enumerate(ids):
            if not row:
                continue  # an empty text stays the zero vector
            rows = table[mapping[row] if mapping is not None else row].astype(np.float32)
            if weights is not None:
                rows *= weights[row][:, None]
            out[i] = rows.mean(axis=0)
        return l2_normalize(out)

    def encode(self, texts: Sequence[str], *, progress: ProgressFn | None = None) -> np.ndarray:
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        for start in range(0, len(texts), self.chunk_size):
            chunk = texts[start:start + self.chunk_size]
            out[start:start + len(chunk)] = self._vectors(self._token_ids(chunk))
            if progress is not None:
                progress(start + len(chunk), len(texts))
        return out

    def count_tokens(self, texts: Sequence[str]) -> int:
        return sum(len(row) for row in self._token_ids(texts))


if __name__ == "__main__":  # image build: distil once so the first job does not
    print(distill_static())
