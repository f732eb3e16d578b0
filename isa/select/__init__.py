"""Selection methods: one interface, a name registry, budgets."""

from . import baselines as _baselines  # noqa: F401  (registers the baselines)
from . import dpo_native as _dpo_native  # noqa: F401  (registers the DPO-native selectors)
from . import isa as _isa  # noqa: F401  (registers ISA)
from . import preference as _preference  # noqa: F401  (registers the preference methods)
from . import variants as _variants  # noqa: F401  (registers the ISA variants)
from .base import METHODS, SelectionMethod, describe_methods, make_method
from .budget import Budget, apply_budget

__all__ = ["METHODS", "SelectionMethod", "describe_methods", "make_method", "Budget",
           "apply_budget"]
