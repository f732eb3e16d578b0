"""Encoders read a window of tokens; a field longer than it is cut before tokenising."""

from __future__ import annotations

import numpy as np
import pytest

from isa.embed.factory import make_encoder
from tests.conftest import HH_SAMPLE, read_rows


@pytest.fixture(scope="module")
def texts() -> list[str]:
    rows = read_rows(HH_SAMPLE, 4)
    return [r[side] for r in rows for side in ("chosen", "rejected")]


def test_every_encoder_cuts_a_huge_field_before_its_tokenizer_sees_it(texts):
    # the sentence encoder tokenised a 1M-character field whole before truncating it to
    # 256 tokens (a 180 MB upload of such fields held a worker 843 s at 7 GB)
    from isa.embed.base import CHARS_PER_TOKEN, fit_to_window

    enc = make_encoder("sentence", precision="float32", max_seq_length=64)
    seen: list[int] = []
    tokenizer = enc.model.tokenizer
    original = type(tokenizer).__call__

    def counting(self, batch, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003, ANN202
        seen.extend(len(t) for t in ([batch] if isinstance(batch, str) else batch))
        return original(self, batch, *args, **kwargs)

    huge = "the assistant answers. " * 50_000 + texts[0]
    try:
        type(tokenizer).__call__ = counting
        vecs = enc.encode([huge, texts[0]])
        tokens = enc.count_tokens([huge])
    finally:
        type(tokenizer).__call__ = original
    assert seen and max(seen) <= 64 * CHARS_PER_TOKEN
    assert tokens == 64
    # the end is what the encoder reads, cut or not: the vectors are the uncut ones
    # (sentence-transformers' own call on the whole 46k-character text)
    long = "the assistant answers. " * 2_000 + texts[0]
    uncut = enc.model.encode([long, texts[0]], normalize_embeddings=True)
    assert np.allclose(enc.encode([long, texts[0]]), uncut, atol=1e-5)
    assert np.allclose(vecs[1], uncut[1], atol=1e-5)
    assert fit_to_window(["abcdef"], 1, "right") == ["abcdef"]
    assert fit_to_window(["x" * 100], 1, "right") == ["x" * CHARS_PER_TOKEN]
    assert fit_to_window(["x" * 99 + "y"], 1)[0].endswith("y")
