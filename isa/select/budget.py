"""Budgets: a fraction of the units or a count, applied to a method's ranking."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Annotated, ClassVar

import numpy as np
from pydantic import ConfigDict, Field

from ..errors import ConfigError


@dataclass(frozen=True, slots=True)
class Budget:
    """Exactly one of ``fraction`` (0 < f ≤ 1) or ``count`` (≥ 1).

    The rules live here once: the service's job contract embeds this class, and pydantic
    reads the field constraints (for its JSON schema) and runs ``__post_init__``.
    """

    # "exactly one of" is in the JSON schema too, so a schema-valid budget is a valid one
    __pydantic_config__: ClassVar[ConfigDict] = ConfigDict(extra="forbid", json_schema_extra={
        "oneOf": [{"required": ["fraction"], "properties": {"fraction": {"type": "number"},
                                                            "count": {"type": "null"}}},
                  {"required": ["count"], "properties": {"count": {"type": "integer"},
                                                         "fraction": {"type": "null"}}}]})

    fraction: Annotated[float | None, Field(gt=0, le=1)] = None
    count: Annotated[int | None, Field(ge=1, le=10**10)] = None

    def __post_init__(self) -> None:
        if (self.fraction is None) == (self.count is None):
            raise ConfigError("a budget is either a fraction or a count", code="invalid_budget")
        if self.fraction is not None and not 0 < self.fraction <= 1:
            raise ConfigError(f"budget fraction must be in (0, 1], got {self.fraction}",
                              code="invalid_budget")
        if self.count is not None and self.count < 1:
            raise ConfigError(f"budget count must be at least 1, got {self.count}",
                              code="invalid_budget")

    @classmethod
    def parse(cls, text: str | float | int) -> Budget:
        """``"0.05"`` or ``"5%"`` → a fraction; ``"500"`` → a count."""
        if isinstance(text, float):
            return cls(fraction=text)
        if isinstance(text, int):
            return cls(count=text)
        s = str(text).strip()
        try:
            if s.endswith("%"):
                return cls(fraction=float(s[:-1]) / 100)
            if any(c in s for c in ".eE"):
                return cls(fraction=float(s))
            return cls(count=int(s))
        except ValueError as exc:
            raise ConfigError(f"cannot read budget {text!r}: use a fraction like 0.05, a "
                              "percentage like 5%, or a count like 500",
                              code="invalid_budget") from exc

    def size(self, n: int) -> int:
        """How many of ``n`` units the budget keeps."""
        if self.count is not None:
            if self.count > n:
                raise ConfigError(f"budget of {self.count} rows exceeds the {n} available",
                                  code="budget_too_large")
            return self.count
        return min(n, max(1, math.floor(self.fraction * n + 0.5)))  # type: ignore[operator]

    def to_dict(self) -> dict[str, float | int]:
        return {"fraction": self.fraction} if self.fraction is not None else {"count": self.count}


def apply_budget(ranking: np.ndarray, budget: Budget) -> np.ndarray:
    """A boolean mask of the units the budget keeps from ``ranking``."""
    keep = np.zeros(ranking.shape[0], dtype=bool)
    keep[ranking[: budget.size(ranking.shape[0])]] = True
    return keep
