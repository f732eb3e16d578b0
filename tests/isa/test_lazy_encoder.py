"""A model loads only when a text misses the embedding cache: in the library, the CLI and
the workers, a rerun whose every text is cached loads no encoder (and gives the same
vectors and subset as the run that loaded one)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from isa.embed.base import DiskEmbeddingCache, MemoryEmbeddingCache, embed_texts
from isa.embed.factory import make_encoder
from isa.embed.sentence import SentenceTransformerEncoder
from tests.conftest import write_jsonl


@pytest.fixture()
def loads(monkeypatch) -> list[str]:
    """Every model load of the sentence encoder, by encoder name."""
    calls: list[str] = []
    real = SentenceTransformerEncoder._load_now

    def counting(self) -> None:
        calls.append(getattr(self, "name", "?"))
        real(self)

    monkeypatch.setattr(SentenceTransformerEncoder, "_load_now", counting)
    return calls


TEXTS = ["How do I bake bread?", "Recipe for a loaf", "How do I bake bread?",
         "What is the capital of France?"]


def test_the_encoder_loads_on_the_first_uncached_text_only(loads):
    cache = MemoryEmbeddingCache()
    first = make_encoder("sentence", precision="float32", max_seq_length=128)
    assert loads == []  # building it (its name: the cache key) loads nothing
    X1, stats1 = embed_texts(TEXTS, first, cache=cache)
    assert loads == [first.name] and stats1.embedded == 3

    again = make_encoder("sentence", precision="float32", max_seq_length=128)
    assert again.name == first.name
    X2, stats2 = embed_texts(TEXTS, again, cache=cache)
    assert loads == [first.name] and stats2.embedded == 0 and stats2.cached == 3
    assert X2.shape == (4, 384) and np.array_equal(X1, X2)

    # one new text: now the model is needed, and loads once
    embed_texts([*TEXTS, "A new question"], again, cache=cache)
    assert loads == [first.name, again.name]


def test_the_name_is_the_loaded_models_setting(loads):
    """The name read from the model's config file without loading it is the one the
    loaded model reports (the cache key must not change with laziness)."""
    lazy = make_encoder("sentence", precision="float32")
    assert ":len256:" in lazy.name and loads == []
    assert lazy.model.max_seq_length == 256 and lazy.dim == 384 and len(loads) == 1


def test_cli_rerun_on_a_cached_pool_loads_no_model(loads, tmp_path, hh_rows, monkeypatch):
    from isa.cli import app

    monkeypatch.chdir(tmp_path)
    src = write_jsonl(tmp_path / "hh.jsonl", hh_rows[:60])
    runner = CliRunner()

    def select(n: int) -> tuple[str, dict]:
        out, summary = tmp_path / f"subset{n}.jsonl", tmp_path / f"summary{n}.json"
        result = runner.invoke(app, ["select", str(src), "--out", str(out), "--budget", "0.1",
                                     "--cache-dir", str(tmp_path / "cache"), "--precision",
                                     "float32", "--summary", str(summary), "--quiet"])
        assert result.exit_code == 0, result.output
        return out.read_text(), json.loads(summary.read_text())

    subset1, info1 = select(1)
    assert len(loads) == 1 and info1["embedding"]["embedded"] == 120
    subset2, info2 = select(2)
    assert len(loads) == 1, "a fully cached rerun loaded the encoder"
    assert info2["embedding"]["cached"] == 120 and info2["embedding"]["embedded"] == 0
    assert subset2 == subset1 and subset1.count("\n") == 6


def test_library_run_selection_with_a_disk_cache(loads, tmp_path, hh_rows):
    from isa import Budget, PreferenceFile, make_method, run_selection

    src = write_jsonl(tmp_path / "hh.jsonl", hh_rows[:40])

    def run() -> np.ndarray:
        cache = DiskEmbeddingCache(tmp_path / "cache")  # a fresh process's view of it
        result = run_selection(PreferenceFile(src), make_method("isa"), Budget(count=4),
                               encoder=lambda: make_encoder("sentence", precision="float32"),
                               cache=cache)
        cache.save()
        return result.selected

    first = run()
    assert len(loads) == 1
    assert np.array_equal(run(), first) and len(loads) == 1


def test_the_causal_lm_is_named_without_loading_or_dequantising(monkeypatch, tmp_path):
    """Its name (the cache key) is its de-quantised folder's, known before that folder is
    built: a cached run neither de-quantises the GGUF nor loads the model."""
    from isa.embed import causal, models

    def no_work(*args, **kwargs):  # noqa: ANN202
        raise AssertionError("the model was loaded or de-quantised")

    monkeypatch.setattr(causal.CausalLMEncoder, "_load_now", no_work)
    monkeypatch.setattr(models, "dequantize_gguf", no_work)
    enc = make_encoder("causal-lm", precision="float32", cache_dir=tmp_path)
    assert enc.name == "clm:SmolLM2-135M-Instruct.Q4_1-f32:float32:len512:left:last"
    assert not enc.loaded and not any(tmp_path.iterdir())
