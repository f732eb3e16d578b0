"""The static encoder: a token table distilled from the packaged MiniLM (model2vec)."""

from __future__ import annotations

import numpy as np
import pytest

from isa.embed.base import MemoryEmbeddingCache, embed_texts
from isa.embed.factory import make_encoder
from isa.errors import ConfigError, EncoderError
from tests.conftest import HH_SAMPLE, read_rows

pytest.importorskip("model2vec")


@pytest.fixture(scope="module")
def encoder():
    # the default model cache, as the workers use it: the table is distilled once per
    # machine (about a minute on two cores), whichever test or job needs it first
    enc = make_encoder("static")
    enc.encode(["warm"])
    return enc


@pytest.fixture(scope="module")
def texts() -> list[str]:
    rows = read_rows(HH_SAMPLE, 60)
    return [r[side] for r in rows for side in ("chosen", "rejected")]


def test_static_vectors_equal_model2vecs_own_encode(encoder, texts):
    short = [t[-400:] for t in texts]  # inside the window: no truncation on either side
    ours = encoder.encode(short)
    theirs = encoder.model.encode(short, use_multiprocessing=False)
    assert ours.dtype == np.float32 and ours.shape == (len(short), encoder.dim)
    assert np.allclose(ours, theirs, atol=1e-5)
    assert np.allclose(np.linalg.norm(ours, axis=1), 1, atol=1e-5)


def test_static_is_deterministic_and_order_independent(encoder, texts):
    a = encoder.encode(texts)
    b = encoder.encode(texts[::-1])[::-1]
    assert np.array_equal(a, b)
    again = make_encoder("static")  # a second process's encoder: the same table
    assert np.array_equal(again.encode(texts[:5]), a[:5])
    # different texts, different vectors (a broken table would map all to one point)
    assert np.unique(a.round(5), axis=0).shape[0] == len(set(texts))


def test_static_has_cache_names_of_its_own(encoder):
    assert encoder.name == "static:all-MiniLM-L6-v2:pca256:len512:left"
    assert encoder.name != make_encoder("sentence").name
    assert make_encoder("static", max_seq_length=128).name.endswith(":len128:left")
    cache = MemoryEmbeddingCache()
    _, first = embed_texts(["one", "two", "one"], encoder, cache=cache)
    assert (first.unique, first.embedded) == (2, 2)
    _, second = embed_texts(["one", "two"], make_encoder("static"), cache=cache)
    assert (second.cached, second.embedded) == (2, 0)


def test_static_keeps_the_end_and_cuts_before_tokenising(encoder):
    window = make_encoder("static", max_seq_length=8)
    tail = " the assistant refuses to help with that request politely"
    # what lies before the window does not matter; what ends the text does
    a, b = window.encode(["cats " * 200 + tail, "dogs " * 200 + tail])
    c = window.encode(["cats " * 200 + " the assistant explains how to bake bread"])[0]
    assert np.allclose(a, b, atol=1e-6)
    assert float(a @ c) < 0.99
    # a 2-million-character field is tokenised only up to what the window reads
    huge = "word " * 400_000
    assert window.count_tokens([huge]) == 8
    assert np.isfinite(window.encode([huge, ""])).all()
    assert not window.encode([""]).any()  # an empty text stays the zero vector


def test_static_refuses_what_it_cannot_honour():
    with pytest.raises(ConfigError) as err:
        make_encoder("static", precision="bfloat16")
    assert err.value.code == "invalid_encoder"
    with pytest.raises(ConfigError):
        make_encoder("static", backend="openvino")
    with pytest.raises(EncoderError, match="no hub downloads"):
        make_encoder("static", model="someone/some-model")


def test_a_saved_static_folder_loads_as_it_is(encoder, tmp_path, texts):
    folder = tmp_path / "my-static"
    encoder.model.save_pretrained(str(folder))
    mine = make_encoder("static", model=str(folder))
    assert mine.name == "static:my-static:saved:len512:left"
    assert np.allclose(mine.encode(texts[:4]), encoder.encode(texts[:4]), atol=1e-6)

