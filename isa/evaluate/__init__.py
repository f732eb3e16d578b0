"""Evaluation and budget advice: a proxy alignment score (a reward probe), the paper's
exponential-plateau curve, and reports (JSON + PNG)."""

from .curve import PlateauFit, fit_plateau
from .probe import PreferenceProbe, ProbeScore, wilson_interval
from .split import split_by_prompt

__all__ = ["PlateauFit", "PreferenceProbe", "ProbeScore", "fit_plateau", "split_by_prompt",
           "wilson_interval"]
