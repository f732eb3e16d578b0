"""The paper's encoder: last-token hidden states of a real causal LM (SmolLM2-135M-Instruct,
de-quantised from the packaged GGUF and cached)."""

from __future__ import annotations

import numpy as np
import pytest

from isa import Budget, CausalLMEncoder, PreferenceFile, make_method, run_selection
from tests.conftest import write_jsonl


@pytest.fixture(scope="module")
def causal():
    return CausalLMEncoder(precision="float32", batch_size=4)


def test_last_token_embedding_ignores_padding_and_tells_texts_apart(causal):
    texts = ["What is the capital of France?\nParis.",
             "Explain photosynthesis in one sentence.\nPlants turn light, water and CO2 into "
             "sugar and oxygen.", "hi"]
    together = causal.encode(texts)  # padded to the longest text in one batch
    alone = np.stack([causal.encode([t])[0] for t in texts])
    assert together.shape == (3, causal.dim) == (3, 576)
    assert np.allclose(together, alone, atol=1e-3)  # the last *real* token, not a pad
    assert not np.allclose(together[0], together[1], atol=1e-2)
    assert causal.name.startswith("clm:SmolLM2-135M-Instruct")


def test_isa_runs_on_causal_lm_embeddings(tmp_path, hh_rows, causal):
    data = PreferenceFile(write_jsonl(tmp_path / "hh.jsonl", hh_rows[:40]))
    result = run_selection(data, make_method("isa"), Budget(count=4), encoder=causal)
    assert result.n_selected == 4
    assert result.encoder_name == causal.name
    assert result.embed_stats.embedded == 80
