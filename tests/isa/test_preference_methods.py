"""The methods that learn from the data's verdicts: cross-fitting keeps every pair out of
the model that scores it; cleaning finds planted label flips; the diversity and length
rules hold on every prefix."""

from __future__ import annotations

import numpy as np
import pytest

from isa import ConfigError, MethodInputError, make_method
from isa.select.base import pair_differences
from isa.select.preference import cross_fit_margins, prompt_folds


def _labelled_pairs(n: int = 400, d: int = 16, flip_share: float = 0.2, seed: int = 0):
    """Pairs whose label follows a hidden reward w·x, with a seeded share flipped."""
    rng = np.random.default_rng(seed)
    w = rng.normal(size=d)
    a, b = rng.normal(size=(n, d)), rng.normal(size=(n, d))
    flipped = rng.random(n) < flip_share
    swap = (((a - b) @ w) < 0) ^ flipped  # put the true winner first, then flip some
    a[swap], b[swap] = b[swap].copy(), a[swap].copy()
    X = np.empty((2 * n, d), np.float32)
    X[0::2], X[1::2] = a, b
    data = {"X": X, "groups": np.repeat(np.arange(n), 2),
            "item_labels": np.array(["chosen", "rejected"] * n),
            "meta": {"_prompt_group": (np.arange(n) % (n // 4)).astype(float),
                     "_chosen_chars": rng.integers(10, 900, n).astype(float),
                     "_rejected_chars": rng.integers(10, 900, n).astype(float)}}
    return data, flipped


def test_cross_fitting_never_scores_a_pair_with_a_model_that_saw_it():
    data, _ = _labelled_pairs()
    n = len(data["meta"]["_prompt_group"])
    diff = pair_differences(data["X"], data["groups"], n, data["item_labels"], "t")
    folds = prompt_folds(data["meta"], n, 5, random_state=3)
    prompts = data["meta"]["_prompt_group"]
    # a prompt's pairs share one fold: no prompt is on both sides of a fit
    assert all(len(set(folds[prompts == p])) == 1 for p in np.unique(prompts))
    base = cross_fit_margins(diff, folds)
    for i in (0, 17, 251):
        flipped = diff.copy()
        flipped[i] = -flipped[i]  # pair i's label reversed
        again = cross_fit_margins(flipped, folds)
        # the model that scores pair i never trained on it: its margin just changes sign
        assert again[i] == pytest.approx(-base[i], abs=1e-9)
        # ... while the models that did train on it (the other folds') changed
        assert not np.allclose(again[folds != folds[i]], base[folds != folds[i]])


def test_easy_first_agrees_with_the_labels_and_hard_first_does_not():
    data, flipped = _labelled_pairs()
    easy = make_method("consistency").fit(**data, n_select=40).ranking_[:40]
    hard = make_method("consistency", order="hard").fit(**data, n_select=40).ranking_[:40]
    assert flipped[easy].mean() < 0.05 < 0.8 < flipped[hard].mean()


def test_cleaning_finds_planted_label_flips_and_ranks_them_last():
    data, flipped = _labelled_pairs()
    m = make_method("clean", base="random").fit(**data, n_select=50)
    issue = m.details_["label_issue"]
    precision, recall = flipped[issue].mean(), issue[flipped].mean()
    assert precision > 0.6 and recall > 0.6, (precision, recall)
    n_kept = int((~issue).sum())
    assert not issue[m.ranking_[:n_kept]].any() and issue[m.ranking_[n_kept:]].all()
    assert flipped[m.ranking_[:50]].mean() < flipped.mean() / 2


def test_quality_diversity_skips_near_duplicates_and_caps_prompts():
    data, _ = _labelled_pairs(n=200)
    X = data["X"].copy()
    X[2:40] = np.tile(X[0:2], (19, 1))  # pairs 1..19 duplicate pair 0
    m = make_method("quality_diversity", quality="random", threshold=0.95,
                    per_prompt_cap=1).fit(**{**data, "X": X}, n_select=30)
    top = m.ranking_[:30]
    assert len(set(top.tolist()) & set(range(20))) <= 1
    prompts = data["meta"]["_prompt_group"][top]
    assert len(set(prompts.tolist())) == 30  # one pair per prompt
    assert sorted(m.ranking_.tolist()) == list(range(200))


def test_length_balanced_prefixes_hold_both_sides_evenly():
    data, _ = _labelled_pairs()
    meta = data["meta"]
    longer = meta["_chosen_chars"] > meta["_rejected_chars"]
    m = make_method("length_balanced", base="isa").fit(**data, n_select=60)
    counts = np.cumsum(longer[m.ranking_])
    k = np.arange(1, len(counts) + 1)
    both = k <= 2 * min(longer.sum(), (~longer).sum())
    assert np.abs(2 * counts[both] - k[both]).max() <= 1
    # within a side the base method's order is kept
    isa = make_method("isa").fit(**data).ranking_
    assert np.array_equal(m.ranking_[longer[m.ranking_]], isa[longer[isa]])


def test_preference_methods_name_what_they_lack():
    data, _ = _labelled_pairs(n=40)
    with pytest.raises(MethodInputError, match="item_labels"):
        make_method("consistency").fit(data["X"], groups=data["groups"], meta=data["meta"])
    with pytest.raises(MethodInputError, match="one chosen and one"):
        make_method("clean").fit(data["X"], meta={}, item_labels=data["item_labels"])
    with pytest.raises(ConfigError, match="order"):
        make_method("consistency", order="sideways").fit(**data)
    with pytest.raises(MethodInputError, match="answer lengths"):
        make_method("length_balanced").fit(**{**data, "meta": {}})
