"""Evaluation: the plateau fit, prompt-grouped splits, the probe on real pairs."""

from __future__ import annotations

import random

import numpy as np
import pytest

from isa import Budget, PreferenceFile
from isa.evaluate import fit_plateau, split_by_prompt, wilson_interval
from isa.evaluate.length import balanced_accuracy, length_baseline
from isa.evaluate.probe import score_margins
from isa.evaluate.runner import (
    budget_curve,
    evaluate_subset,
    holdout,
    is_stochastic,
    load_pairs,
)
from isa.evaluate.split import kfold_by_prompt
from tests.conftest import write_jsonl


@pytest.mark.parametrize(("r", "a", "b"), [(0.82, 0.5, 0.3), (0.7, 0.55, 0.02),
                                           (0.9, 0.6, 0.055)])
def test_plateau_fit_recovers_known_parameters(r, a, b):
    rng = np.random.default_rng(0)
    x = np.array([0, 1, 2, 3.5, 5, 10, 25, 50, 75, 100], dtype=float)
    y = r - (r - a) * np.exp(-b * x) + rng.normal(0, 0.002, x.size)
    fit = fit_plateau(x, y)
    assert fit.r == pytest.approx(r, abs=0.01)
    assert fit.a == pytest.approx(a, abs=0.01)
    assert fit.b == pytest.approx(b, rel=0.15)
    assert fit.r2 > 0.99
    assert fit.budget_for(0.95) == pytest.approx(-np.log(0.05) / fit.b)


def test_split_never_puts_a_prompt_on_both_sides():
    rng = random.Random(1)
    prompts = [f"prompt {rng.randrange(300)}" for _ in range(3000)]
    train, test = split_by_prompt(prompts, eval_fraction=0.25, seed=3)
    assert len(train) + len(test) == 3000
    assert not {prompts[i] for i in train} & {prompts[i] for i in test}
    assert 0.15 < len(test) / 3000 < 0.35
    shuffled = prompts[::-1]
    _, test2 = split_by_prompt(shuffled, eval_fraction=0.25, seed=3)
    assert {shuffled[i] for i in test2} == {prompts[i] for i in test}


def test_wilson_interval():
    lo, hi = wilson_interval(80, 100)
    assert lo < 0.8 < hi and hi - lo == pytest.approx(0.16, abs=0.02)
    assert wilson_interval(0, 10)[0] == 0.0


@pytest.fixture(scope="module")
def alpaca_pairs(tmp_path_factory, sentence_encoder):
    from tests.conftest import ALPACA_SAMPLE, read_rows

    rows = read_rows(ALPACA_SAMPLE, 500)
    path = write_jsonl(tmp_path_factory.mktemp("eval") / "pairs.jsonl", rows)
    return load_pairs(PreferenceFile(path), sentence_encoder)


def test_probe_beats_chance_on_real_pairs(alpaca_pairs):
    train, test, info = holdout(alpaca_pairs, None, eval_fraction=0.3, seed=0)
    assert info["kind"] == "split_by_prompt"
    assert not set(train.table.prompt_keys) & set(test.table.prompt_keys)
    report = evaluate_subset(train, test, "random", {}, Budget(fraction=1.0))
    full = report["full"]
    assert full["n_eval"] == len(test.table) > 100
    assert full["ci_low"] > 0.5, full  # clearly above chance


def test_budget_curve_reports_every_method_and_a_fit(alpaca_pairs, tmp_path):
    from isa.evaluate.report import plot_curve

    train, test, _ = holdout(alpaca_pairs, None, eval_fraction=0.3, seed=0)
    report = budget_curve(train, test, [("random", {}), ("isa", {})], grid=(5, 10, 25, 50, 100),
                          seeds=2)
    assert [m["method"] for m in report["methods"]] == ["random", "isa"]
    rnd = report["methods"][0]
    assert rnd["seeds"] == 2 and len(rnd["accuracy"]) == 5
    # at 100% every method trains on the whole pool: the same probe as "full"
    assert all(m["accuracy"][-1] == pytest.approx(report["full"]["accuracy"])
               for m in report["methods"])
    assert rnd["fit"] is not None and rnd["fit"]["b"] > 0
    png = tmp_path / "curve.png"
    plot_curve(report, png)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000


def test_the_pure_length_rule_scores_exactly_half_balanced_on_real_pairs(alpaca_pairs):
    diff = alpaca_pairs.length_diff
    assert (diff != 0).mean() > 0.95  # the reader measured every pair's answers
    rule = score_margins(diff, length_diff=diff)  # "the longer answer wins"
    assert rule.balanced["accuracy_chosen_longer"] == 1.0
    assert rule.balanced["accuracy_chosen_shorter"] == 0.0
    assert rule.balanced_accuracy == 0.5
    base = length_baseline(diff)
    # AlpacaEval judges prefer the longer answer: the rule's plain accuracy is high
    assert base["length_rule_accuracy"] > 0.75 and base["length_dominated"]
    assert "length-dominated" in base["warning"]
    assert rule.accuracy == pytest.approx(base["chosen_longer_share"])


def test_balanced_accuracy_counts_each_side_apart():
    correct = np.array([1, 1, 1, 0, 1, 0, 0, 1], dtype=bool)
    diff = np.array([5, 3, 2, 9, -4, -1, -7, 0])  # 4 longer, 3 shorter, 1 tie
    out = balanced_accuracy(correct, diff)
    assert (out["n_chosen_longer"], out["n_chosen_shorter"], out["n_length_tied"]) == (4, 3, 1)
    assert out["balanced_accuracy"] == pytest.approx((3 / 4 + 1 / 3) / 2)
    assert out["n_min_side"] == 3
    assert out["balanced_ci_low"] < out["balanced_accuracy"] < out["balanced_ci_high"]
    assert balanced_accuracy(correct[:3], diff[:3])["balanced_accuracy"] is None


def test_reports_carry_the_length_baseline_and_pick_the_metric(alpaca_pairs):
    train, test, _ = holdout(alpaca_pairs, None, eval_fraction=0.3, seed=0)
    rep = evaluate_subset(train, test, "random", {}, Budget(fraction=0.5))
    assert {"balanced_accuracy", "n_min_side", "accuracy_chosen_shorter"} <= set(rep["full"])
    assert rep["length"]["length_dominated"] is True
    curve = budget_curve(train, test, [("random", {})], grid=(10, 50, 100), seeds=1)
    assert curve["metric"] == "balanced_accuracy" and "length-dominated" in curve[
        "metric_reason"]
    entry = curve["methods"][0]
    assert len(entry["balanced_accuracy"]) == 3
    assert entry["balanced_accuracy"][-1] == pytest.approx(curve["full"]["balanced_accuracy"])
    plain = budget_curve(train, test, [("random", {})], grid=(10, 50, 100), seeds=1,
                         metric="accuracy")
    assert plain["metric"] == "accuracy" and plain["metric_reason"] == "asked for"


def test_the_readme_names_the_reports_fields(alpaca_pairs):
    """Every field the docs' length-aware paragraph names is in a real report."""
    import re

    from tests.conftest import ROOT

    text = (ROOT / "docs" / "guides" / "evaluation.md").read_text()
    paragraph = text[text.index("**Length-aware.**"):].split("\n\n")[0]
    named = set(re.findall(r"`([a-z_.]+)`", paragraph))
    assert {"balanced_accuracy", "length.length_rule_accuracy"} <= named
    train, test, _ = holdout(alpaca_pairs, None, eval_fraction=0.3, seed=0)
    rep = evaluate_subset(train, test, "random", {}, Budget(fraction=0.5))
    for name in named - {"subset", "full"}:
        if name.startswith("length."):
            assert name.split(".", 1)[1] in rep["length"], name
        else:
            assert name in rep["subset"] and name in rep["full"], name


def test_k_folds_keep_prompts_whole_and_cover_every_pair_once():
    rng = random.Random(2)
    prompts = [f"p{rng.randrange(120)}" for _ in range(1000)]
    folds = kfold_by_prompt(prompts, k=5, seed=1)
    assert sorted(np.concatenate(folds).tolist()) == list(range(1000))
    sets = [{prompts[i] for i in f} for f in folds]
    assert all(not (a & b) for i, a in enumerate(sets) for b in sets[i + 1:])
    assert max(len(s) for s in sets) - min(len(s) for s in sets) <= 1  # prompts per fold
    again = kfold_by_prompt(prompts[::-1], k=5, seed=1)
    assert [{prompts[::-1][i] for i in f} for f in again] == sets


def test_flipping_labels_swaps_sides_and_leaves_the_original_alone(alpaca_pairs):
    noisy, flip = alpaca_pairs.with_flipped_labels(0.25, seed=3)
    assert 0.18 < flip.mean() < 0.32
    assert np.array_equal(noisy.diff[flip], -alpaca_pairs.diff[flip])
    assert np.array_equal(noisy.diff[~flip], alpaca_pairs.diff[~flip])
    assert np.array_equal(noisy.length_diff[flip], -alpaca_pairs.length_diff[flip])
    labels = np.asarray(noisy.table.text_labels)[np.asarray(alpaca_pairs.table.groups) == 0]
    assert sorted(labels.tolist()) == ["chosen", "rejected"]
    assert alpaca_pairs.with_flipped_labels(0.25, seed=3)[1].tolist() == flip.tolist()


def test_methods_built_on_random_are_averaged_over_seeds():
    assert is_stochastic("random", {}) and not is_stochastic("isa", {})
    assert is_stochastic("clean", {"base": "random"})
    assert is_stochastic("length_balanced", {"base": "clean", "base_params": {
        "base": "density"}})
    assert not is_stochastic("length_balanced", {"base": "consistency"})
