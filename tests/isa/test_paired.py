"""The paired comparison the training yardstick reports: constructed arms whose difference
and interval are known in closed form."""

from __future__ import annotations

import math

import numpy as np
import pytest

from isa.evaluate.paired import mcnemar, paired_difference


def test_a_known_difference_gets_its_known_interval():
    n = 1000
    b = np.zeros(n)
    b[:500] = 1
    a = b.copy()
    a[500:600] = 1  # A is right on 100 more pairs, never wrong where B is right
    r = paired_difference(a, b, n_boot=4000)
    assert r.difference == pytest.approx(0.1) and (r.mean_a, r.mean_b) == (0.6, 0.5)
    # per-pair differences are 0/1 with mean 0.1: standard error sqrt(0.1 * 0.9 / n)
    half = 1.96 * math.sqrt(0.1 * 0.9 / n)
    assert r.ci_low == pytest.approx(0.1 - half, abs=0.004)
    assert r.ci_high == pytest.approx(0.1 + half, abs=0.004)
    assert r.above_zero
    # unpaired, the same means would give a far wider interval: pairing is what tightens it
    unpaired_half = 1.96 * math.sqrt(0.6 * 0.4 / n + 0.5 * 0.5 / n)
    assert r.ci_high - r.ci_low < unpaired_half


def test_noise_between_seeds_widens_the_interval():
    n = 1000
    truth = np.zeros(n)
    truth[:500] = 1
    steady = np.tile(truth, (3, 1))  # every seed right on the same 50%
    shifted = steady.copy()  # seeds at 60%, 50% and 40%: the same mean, seed-level noise
    shifted[0, 500:600] = 1
    shifted[2, 400:500] = 0
    base = np.tile(np.roll(truth, 250), (3, 1))
    tight = paired_difference(steady, base)
    wide = paired_difference(shifted, base)
    assert tight.difference == wide.difference == 0.0
    # resampling three seeds from {0.6, 0.5, 0.4}: a spread of about 0.047 on its own
    assert (wide.ci_high - wide.ci_low) > 1.5 * (tight.ci_high - tight.ci_low)
    assert paired_difference(base, base).difference == 0.0


def test_identical_arms_straddle_zero_and_a_tie_is_not_significant():
    rng = np.random.default_rng(2)
    a = (rng.random((3, 500)) < 0.6).astype(float)
    r = paired_difference(a, a[::-1])  # the same runs, seeds in another order
    assert r.ci_low <= 0 <= r.ci_high and not r.above_zero
    t = mcnemar(a, a)
    assert (t.a_only, t.b_only, t.p_value) == (0, 0, 1.0)


def test_mcnemar_exact_p_values():
    a = np.array([1] * 10 + [0] * 5)
    b = np.array([0] * 10 + [0] * 5)
    t = mcnemar(a, b)
    assert (t.a_only, t.b_only) == (10, 0)
    assert t.p_value == pytest.approx(2 * 0.5 ** 10)
    a = np.array([1, 1, 1, 0, 0, 1])
    b = np.array([0, 0, 1, 1, 0, 1])  # 2 vs 1 discordant: P(X<=1 of 3)*2 = 1.0
    assert mcnemar(a, b).p_value == pytest.approx(1.0)
    big = mcnemar(np.ones(3000), np.zeros(3000))  # no underflow to 0 / overflow
    assert 0 < big.p_value < 1e-300 or big.p_value == 0.0


def test_with_several_seeds_mcnemar_is_the_sign_test_on_pair_means():
    # two seeds of B that disagree on every pair (each pair half right) and one seed of A
    # right on half the pairs: as many pairs A's as B's, p = 1 (a seed majority would call
    # B wrong on every pair and hand A 50 pairs to none)
    b = np.array([[1, 0] * 50, [0, 1] * 50])
    a = np.array([[1, 0] * 50])
    t = mcnemar(a, b)
    assert (t.a_only, t.b_only, t.p_value) == (50, 50, 1.0)
    assert mcnemar(b[:1], b[1:]).a_only == 50  # one seed each: McNemar as it was
    a2 = np.ones((3, 100))
    a2[0, :30] = 0  # A's mean below B's only where B is right on both seeds
    t = mcnemar(a2, np.ones((2, 100)))
    assert (t.a_only, t.b_only) == (0, 30)


def test_arms_on_different_pairs_are_refused():
    with pytest.raises(ValueError, match="different pairs"):
        paired_difference(np.ones((2, 10)), np.ones((2, 11)))
