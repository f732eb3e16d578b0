"""The sentence encoder on OpenVINO: the same vectors as torch, its own cache name."""

from __future__ import annotations

import numpy as np
import pytest

from isa.embed.factory import make_encoder
from isa.errors import ConfigError
from tests.conftest import HH_SAMPLE, read_rows

pytest.importorskip("openvino")


@pytest.fixture(scope="module")
def texts() -> list[str]:
    rows = read_rows(HH_SAMPLE, 40)
    return [r[side] for r in rows for side in ("chosen", "rejected")]  # whole dialogues


def test_openvino_matches_torch_and_caches_apart(texts):
    torch_enc = make_encoder("sentence", precision="float32", max_seq_length=128)
    ov_enc = make_encoder("sentence", precision="float32", max_seq_length=128,
                          backend="openvino")
    a, b = torch_enc.encode(texts), ov_enc.encode(texts)
    assert b.shape == a.shape and b.dtype == np.float32
    cos = (a * b).sum(1)
    assert cos.min() > 0.9999, cos.min()
    assert np.allclose(np.linalg.norm(b, axis=1), 1, atol=1e-5)
    # same order in, same order out, whatever the length-sorted batches did
    assert np.allclose(ov_enc.encode(texts[::-1])[::-1], b, atol=1e-5)
    assert ov_enc.name != torch_enc.name and ov_enc.name.endswith(":openvino")


def test_openvino_bf16_keeps_the_direction(texts):
    enc = make_encoder("sentence", precision="bfloat16", max_seq_length=128,
                       backend="openvino")
    ref = make_encoder("sentence", precision="float32", max_seq_length=128).encode(texts)
    assert ((enc.encode(texts) * ref).sum(1)).min() > 0.995
    assert "bfloat16" in enc.name


def test_openvino_is_refused_where_it_does_not_apply():
    with pytest.raises(ConfigError) as err:
        make_encoder("causal-lm", backend="openvino")
    assert err.value.code == "invalid_encoder"
    with pytest.raises(ConfigError):
        make_encoder("sentence", backend="onnx")


def test_a_failed_compile_leaves_the_encoder_unloaded_never_on_torch(texts, monkeypatch):
    from isa.embed.sentence import SentenceTransformerEncoder

    enc = make_encoder("sentence", backend="openvino", precision="float32")
    calls = []

    def broken(self, model):  # noqa: ANN001, ANN202
        calls.append(1)
        raise ConfigError("compile failed", code="invalid_encoder")

    monkeypatch.setattr(SentenceTransformerEncoder, "_to_openvino", broken)
    for _ in range(2):  # the second call tries again: it does not fall back to torch
        with pytest.raises(ConfigError, match="compile failed"):
            enc.encode(texts[:2])
        assert not enc.loaded
    assert len(calls) == 2
