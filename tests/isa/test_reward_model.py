"""The fine-tuned reward model evaluator: it learns a preference signal it is shown."""

from __future__ import annotations

import numpy as np

from isa.evaluate.reward_model import RewardModel


def test_the_reward_model_learns_a_planted_preference():
    # a clear, learnable rule: a polite, helpful answer over a curt refusal
    topics = ["bread", "taxes", "a bicycle", "sleep", "python", "the moon", "tea", "rain",
              "chess", "a resume", "tomatoes", "a car battery"]
    good = [f"Happy to help with {t}: here are three clear steps, with an example."
            for t in topics]
    bad = [f"No. Figure out {t} yourself." for t in topics]
    rm = RewardModel(epochs=4, batch_size=4, max_length=32, seed=0)
    rm.fit(good[:8], bad[:8])
    assert rm.losses_[-1] < rm.losses_[0]
    # held-out topics: the learned reward prefers the helpful answer
    assert (rm.margins(good[8:], bad[8:]) > 0).all()
    assert np.isfinite(rm.rewards(["anything"])).all()
