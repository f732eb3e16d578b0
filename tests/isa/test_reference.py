"""The reference model's log-probabilities (isa.embed.reference) and the DPO-native
selectors that read them (isa.select.dpo_native), on a tiny random model and real pairs."""

from __future__ import annotations

import math
import random

import numpy as np
import pytest

from isa import Budget, MemoryEmbeddingCache, PreferenceFile, make_method, run_selection
from isa.align import ModelRegistry
from isa.embed.base import Encoder
from isa.embed.reference import MEAN, SUM, TOKENS, ReferenceScorer, pair_text
from isa.errors import ConfigError, MethodInputError
from isa.select.dpo_native import REF_COLUMNS
from tests.conftest import write_jsonl


@pytest.fixture(scope="module")
def tiny_path() -> str:
    return str(ModelRegistry().resolve("tiny-llama-random"))


def _scorer(path: str, **kw) -> ReferenceScorer:
    return ReferenceScorer(path, device="cpu", precision="float32", **kw)


def test_log_probabilities_equal_a_direct_forward_pass(tiny_path):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_path, local_files_only=True)
    model = AutoModelForCausalLM.from_pretrained(tiny_path, local_files_only=True).eval()
    pairs = [("What is the capital of France?", " Paris, of course."),
             ("Say hi", " hi"), ("", " An answer with no prompt at all, a longer one."),
             ("A much longer question about the weather in the mountains in spring", " Cold.")]
    got = _scorer(tiny_path, batch_size=3).encode([pair_text(p, c) for p, c in pairs])
    for (p, c), row in zip(pairs, got, strict=True):
        ids_p = tok(p)["input_ids"] or [tok.bos_token_id]  # an empty prompt: a start token
        ids_c = tok(c, add_special_tokens=False)["input_ids"]
        ids = torch.tensor([ids_p + ids_c])
        with torch.no_grad():
            logp = torch.log_softmax(model(input_ids=ids).logits[0, :-1].float(), -1)
        want = sum(float(logp[len(ids_p) + k - 1, t]) for k, t in enumerate(ids_c))
        assert row[SUM] == pytest.approx(want, abs=2e-3)  # batched with padding, unpadded
        assert row[TOKENS] == len(ids_c) and row[MEAN] == pytest.approx(want / len(ids_c),
                                                                          abs=2e-3)


def test_completions_sharing_a_prompt_score_as_if_alone(tiny_path):
    """A pair's two answers run on one pass over their prompt (its cached keys and
    values): each must score exactly as its own unpadded sequence does, also when the
    prompt is cut to fit (then the two cut prompts differ and share nothing)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from isa.embed.reference import sequence_logps

    tok = AutoTokenizer.from_pretrained(tiny_path, local_files_only=True)
    model = AutoModelForCausalLM.from_pretrained(tiny_path, local_files_only=True).eval()
    rng = random.Random(3)
    words = ["the", "cat", "sat", "on", "a", "mat", "why", "is", "it", "so", "cold", "in",
             "north", "today"]

    def text(n: int) -> str:
        return " ".join(rng.choice(words) for _ in range(n))

    prompts, completions = [], []
    for n_prompt in (0, 2, 9, 40, 70, 3, 25):
        prompt = text(n_prompt)
        for n_answer in rng.sample([1, 3, 12, 30, 55], 3):
            prompts.append(prompt)
            completions.append(text(n_answer))
    order = list(range(len(prompts)))
    rng.shuffle(order)
    prompts, completions = [prompts[i] for i in order], [completions[i] for i in order]
    got = sequence_logps(model, tok, prompts, completions, max_length=64, batch_size=4)
    for p, c, row in zip(prompts, completions, got, strict=True):
        ids_p = tok(p)["input_ids"] or [tok.bos_token_id]
        ids_c = tok(c, add_special_tokens=False)["input_ids"]
        ids = (ids_p + ids_c)[-64:]
        n = min(len(ids_c), len(ids) - 1)
        with torch.no_grad():
            logp = torch.log_softmax(model(input_ids=torch.tensor([ids])).logits[0].float(), -1)
        want = sum(float(logp[len(ids) - n + k - 1, t]) for k, t in enumerate(ids[-n:]))
        assert row[TOKENS] == n
        assert row[SUM] == pytest.approx(want, abs=2e-3)


def test_a_second_pass_over_cached_pairs_runs_no_model(tmp_path, alpaca_rows, tiny_path,
                                                       monkeypatch):
    from isa.embed import reference

    calls = []
    real = reference.sequence_logps
    monkeypatch.setattr(reference, "sequence_logps",
                        lambda *a, **k: calls.append(len(a[2])) or real(*a, **k))
    data = PreferenceFile(write_jsonl(tmp_path / "a.jsonl", alpaca_rows[:24]))
    cache = MemoryEmbeddingCache()
    scorer = _scorer(tiny_path, max_length=128)
    first = run_selection(data, make_method("implicit_margin"), Budget(count=6),
                          reference=scorer, cache=cache)
    assert sum(calls) == 48 and first.reference_stats.embedded == 48
    calls.clear()
    fresh = _scorer(tiny_path, max_length=128)  # a new process's scorer: nothing loaded
    again = run_selection(data, make_method("implicit_margin", order="hard"), Budget(count=6),
                          reference=fresh, cache=cache)
    assert calls == [] and not fresh.loaded and again.reference_stats.cached == 48
    assert again.summary()["reference"]["model"] == scorer.name
    m1 = first.method.details_["implicit_margin"]
    assert np.array_equal(m1, again.method.details_["implicit_margin"])
    # hard keeps the most negative margins; middle the smallest gaps
    assert set(np.argsort(m1)[:6]) == set(np.flatnonzero(again.selected))
    assert set(np.argsort(np.abs(m1))[:6]) == set(np.flatnonzero(first.selected))


@pytest.mark.parametrize("name", ["implicit_margin", "alignment_potential", "margin_bayes"])
def test_selectors_are_seeded_and_ignore_row_order(tmp_path, alpaca_rows, tiny_path, name):
    rows = alpaca_rows[:30]
    shuffled = rows[:]
    random.Random(3).shuffle(shuffled)
    cache = MemoryEmbeddingCache()
    picked = []
    for i, r in enumerate((rows, shuffled, rows)):
        data = PreferenceFile(write_jsonl(tmp_path / f"{i}.jsonl", r))
        result = run_selection(data, make_method(name, random_state=1), Budget(count=8),
                               reference=_scorer(tiny_path, max_length=96), cache=cache)
        picked.append({result.units.row_ids[u] for u in np.flatnonzero(result.selected)})
    assert picked[0] == picked[1] == picked[2] and len(picked[0]) == 8
    # composable: length_balanced keeps its alternation over this base
    data = PreferenceFile(write_jsonl(tmp_path / "lb.jsonl", rows))
    lb = run_selection(data, make_method("length_balanced", base=name), Budget(count=8),
                       reference=_scorer(tiny_path, max_length=96), cache=cache,
                       encoder=_ConstantEncoder())
    longer = lb.method.details_["chosen_longer"][np.flatnonzero(lb.selected)]
    assert abs(int(longer.sum()) - 4) <= 1


class _ConstantEncoder(Encoder):
    """length_balanced embeds its units whatever its base (these bases read none)."""

    name, dim = "constant", 4

    def encode(self, texts, *, progress=None):  # noqa: ANN001, ANN201
        return np.ones((len(texts), self.dim), dtype=np.float32)


def _meta(margin_c, margin_r, **extra):
    c, r = np.asarray(margin_c, float), np.asarray(margin_r, float)
    return {REF_COLUMNS[0]: c * 10, REF_COLUMNS[1]: r * 10, REF_COLUMNS[2]: c,
            REF_COLUMNS[3]: r, **{k: np.asarray(v, float) for k, v in extra.items()}}


def test_the_selectors_rules_on_known_margins():
    meta = _meta([-1.0, -2.0, -1.5, -3.0], [-2.0, -1.0, -1.6, -1.0],
                 margin=[0.9, 0.9, 0.6, 0.5])
    # implicit per-token margins: +1.0, -1.0, +0.1, -2.0
    fit = lambda name, **p: make_method(name, **p).fit(None, meta=meta, n_units=4)  # noqa: E731
    assert list(fit("implicit_margin", order="easy").ranking_) == [0, 2, 1, 3]
    assert list(fit("implicit_margin", order="hard").ranking_) == [3, 1, 2, 0]
    assert list(fit("implicit_margin", order="middle").ranking_)[0] == 2
    assert list(fit("implicit_margin", order="easy", normalize=False).details_[
        "implicit_margin"]) == pytest.approx([10.0, -10.0, 1.0, -20.0])
    ap = fit("alignment_potential")
    assert ap.ranking_[0] in (0, 1) and ap.ranking_[-1] == 3  # clear label, close model
    mb = fit("margin_bayes")
    # judge confidences in [0, 1] are the external probabilities as they are
    assert mb.details_["p_external"] == pytest.approx([0.9, 0.9, 0.6, 0.5])
    p = 0.9 * (1 / (1 + math.exp(-1))) / (0.9 / (1 + math.exp(-1)) +
                                           0.1 * (1 - 1 / (1 + math.exp(-1))))
    assert mb.scores_[0] == pytest.approx(p) and mb.ranking_[0] == 0
    # score differences (not probabilities) go through a sigmoid on their own scale
    scored = _meta([-1.0, -1.0], [-1.0, -1.0], score_chosen=[9, 6], score_rejected=[1, 5])
    mb2 = make_method("margin_bayes").fit(None, meta=scored, n_units=2)
    assert mb2.details_["p_external"][0] > mb2.details_["p_external"][1] > 0.5


def test_missing_inputs_are_named():
    with pytest.raises(MethodInputError) as exc:
        make_method("implicit_margin").fit(None, meta={}, n_units=3)
    assert exc.value.code == "needs_reference"
    with pytest.raises(MethodInputError) as exc:
        make_method("alignment_potential").fit(None, meta=_meta([0, 0], [0, 0]), n_units=2)
    assert exc.value.code == "missing_margin_column"
    with pytest.raises(ConfigError) as exc:
        make_method("implicit_margin", order="sideways")
    assert exc.value.code == "invalid_parameters"


def test_a_run_without_a_reference_model_says_so(tmp_path, alpaca_rows):
    data = PreferenceFile(write_jsonl(tmp_path / "a.jsonl", alpaca_rows[:10]))
    with pytest.raises(ConfigError) as exc:
        run_selection(data, make_method("implicit_margin"), Budget(count=2))
    assert exc.value.code == "needs_reference"


def test_the_cli_selects_with_a_reference_model(tmp_path, alpaca_rows, tiny_path):
    import json
    import subprocess
    import sys

    src = write_jsonl(tmp_path / "a.jsonl", alpaca_rows[:20])
    out, summary = tmp_path / "subset.jsonl", tmp_path / "summary.json"
    proc = subprocess.run([sys.executable, "-m", "isa", "select", str(src), "--method",
                           "margin_bayes", "--budget", "5", "--out", str(out), "--summary",
                           str(summary), "--reference-model", tiny_path, "--precision",
                           "float32", "--device", "cpu"],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    assert len(out.read_text().splitlines()) == 5
    info = json.loads(summary.read_text())
    assert info["reference"]["embedded"] == 40 and info["encoder"] is None
    assert info["reference"]["model"].startswith("ref:tiny-llama-random")
