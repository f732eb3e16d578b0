"""The shared interface of selection methods, and the registry that names them.

Methods follow scikit-learn's conventions: the constructor only stores parameters,
``fit`` validates them, resolves ``random_state`` and returns ``self``; results end in
an underscore. A method scores *units* (a pair, or a single KTO item); the embedding
matrix has one row per *item* and ``groups[i]`` names item i's unit. The budget is
applied outside, on ``ranking_``.
"""

from __future__ import annotations

import inspect
import types
from collections.abc import Callable, Mapping
from functools import cache
from typing import (
    TYPE_CHECKING,
    Annotated,
    Any,
    ClassVar,
    Literal,
    Union,
    get_args,
    get_origin,
    get_type_hints,
)

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model

from ..errors import ConfigError, MethodInputError

if TYPE_CHECKING:  # scipy comes with [embed]: the light install's methods never need it
    import scipy.sparse as sp

Meta = Mapping[str, np.ndarray]  # per-unit numeric columns (e.g. "margin")
#: meta columns the pipeline's reader adds to the data's own (a leading "_" keeps them
#: apart): a prompt id shared by the units of one prompt, and a pair's answer lengths
PROMPT_GROUP, CHOSEN_CHARS, REJECTED_CHARS = "_prompt_group", "_chosen_chars", "_rejected_chars"
_DETAILS, _ITEM_DETAILS = "details.", "item_details."
#: parameter types shared by several methods (their values are checked by make_method)
CovarianceType = Literal["diag", "full", "spherical", "tied"]
# Bounded parameter types: a constructor's annotations are its parameters' contract, which
# make_method (and so the gateway, at POST) checks before any work, so that no job fails
# later in a worker for a parameter. The bounds are what the method can honour, not tuning.
#: a seed (numpy's legacy generators take 32 bits)
Seed = Annotated[int, Field(ge=0, le=2**32 - 1)]
#: folds of a cross-fitted probe
Folds = Annotated[int, Field(ge=2, le=20)]
#: a logistic regression's inverse regularisation strength
InverseReg = Annotated[float, Field(gt=0, le=1e6)]
#: dimensions kept by PCA before a mixture (capped at the embedding width when fitted)
PcaDims = Annotated[int, Field(ge=1, le=4096)]
#: a weight or a similarity in [0, 1]
Unit = Annotated[float, Field(ge=0, le=1)]
#: a cosine similarity
Cosine = Annotated[float, Field(ge=-1, le=1)]


class SelectionMethod:
    """Base class. Subclasses set ``name`` and implement ``_fit``.

    After ``fit``:
        scores_: (n_units,) float — higher is kept first.
        ranking_: (n_units,) int — unit indices, best first (ties: lower index first).
        details_: per-unit diagnostic columns.
        item_details_: per-item diagnostic columns (e.g. ISA's log-likelihood).
    """

    name: ClassVar[str]
    summary: ClassVar[str] = ""
    needs_embeddings: ClassVar[bool] = True
    #: True when ``n_select`` changes the ranking (greedy methods stop at the budget)
    uses_budget_hint: ClassVar[bool] = False
    #: True when the method reads the reference model's log-probabilities of each pair's
    #: answers (``isa.select.dpo_native``); see ``needs_reference``
    uses_reference: ClassVar[bool] = False

    scores_: np.ndarray
    ranking_: np.ndarray
    details_: dict[str, np.ndarray]
    item_details_: dict[str, np.ndarray]

    def fit(self, X: np.ndarray | None, *, groups: np.ndarray | None = None,
            meta: Meta | None = None, n_units: int | None = None,
            n_select: int | None = None,
            item_labels: np.ndarray | None = None,
            progress: Callable[[int, int], None] | None = None) -> SelectionMethod:
        """Score every unit.

        Args:
            X: item embeddings ``(n_items, d)`` (may be ``None`` for methods that do not
                need embeddings, then ``n_units`` is required).
            groups: item -> unit index; default: each item is its own unit.
            meta: per-unit numeric columns.
            n_units: number of units (default ``groups.max() + 1``).
            n_select: the budget, when known; lets greedy methods stop early. The
                ranking beyond it is still complete.
            item_labels: per item, what it is in its unit (``"chosen"``, ``"rejected"``,
                ``"completion"``...): the preference label methods that learn from the
                data's verdicts need it (the pipeline always passes it).
            progress: ``(done, total)`` called as long fits advance (ISA: every EM
                iteration); it may raise to stop the fit (the service does on cancel).
        """
        if X is not None:
            X = np.asarray(X)
            if X.ndim != 2 or not np.issubdtype(X.dtype, np.floating):
                raise ConfigError("X must be a 2-d float array")
            if not np.isfinite(X).all():
                raise ConfigError("X contains NaN or infinite values")
        elif self.needs_embeddings:
            raise ConfigError(f"method {self.name!r} needs embeddings")
        if groups is None:
            if X is None and n_units is None:
                raise ConfigError("n_units is required without X or groups")
            groups = np.arange(X.shape[0] if X is not None else n_units)  # type: ignore[arg-type]
        groups = np.asarray(groups, dtype=np.int64)
        if n_units is None:
            n_units = int(groups.max()) + 1 if groups.size else 0
        if X is not None and groups.shape[0] != X.shape[0]:
            raise ConfigError("groups must have one entry per row of X")
        if n_units == 0:
            raise ConfigError("nothing to select from: no units")
        if item_labels is not None and len(item_labels) != groups.shape[0]:
            raise ConfigError("item_labels must have one entry per item")
        self._item_labels = None if item_labels is None else np.asarray(item_labels)
        self._progress = progress
        self.details_, self.item_details_ = {}, {}
        self._ranking: np.ndarray | None = None  # set by _fit when the order is not by score
        scores = np.asarray(self._fit(X, groups, n_units, dict(meta or {}), n_select),
                            dtype=np.float64)
        self.scores_ = scores
        self.ranking_ = (np.argsort(-scores, kind="stable") if self._ranking is None
                         else self._ranking)
        return self

    def _fit(self, X: np.ndarray | None, groups: np.ndarray, n_units: int, meta: dict,
             n_select: int | None) -> np.ndarray:
        raise NotImplementedError

    @property
    def needs_reference(self) -> bool:
        """The pipeline must compute reference log-probabilities: this method reads them,
        or the method it composes (``base``, ``quality``) does."""
        if self.uses_reference:
            return True
        for nested in ("base", "quality"):
            name = getattr(self, nested, None)
            if isinstance(name, str) and name in METHODS:
                inner = make_method(name, **(getattr(self, f"{nested}_params", None) or {}))
                if inner.needs_reference:
                    return True
        return False

    def state_dict(self) -> dict[str, np.ndarray]:
        """The fitted results as named arrays, for a score cache to store.
        ``load_state_dict`` on a method built with the same parameters restores them."""
        if not hasattr(self, "ranking_"):
            raise ConfigError(f"method {self.name!r} is not fitted")
        state = {"scores": self.scores_, "ranking": self.ranking_}
        state |= {f"{_DETAILS}{k}": v for k, v in self.details_.items()}
        state |= {f"{_ITEM_DETAILS}{k}": v for k, v in self.item_details_.items()}
        return state

    def load_state_dict(self, state: Mapping[str, np.ndarray]) -> SelectionMethod:
        """Restore what ``state_dict`` returned, as if ``fit`` had just run."""
        self.scores_ = np.asarray(state["scores"])
        self.ranking_ = np.asarray(state["ranking"])
        self.details_ = {k[len(_DETAILS):]: np.asarray(v) for k, v in state.items()
                         if k.startswith(_DETAILS)}
        self.item_details_ = {k[len(_ITEM_DETAILS):]: np.asarray(v) for k, v in state.items()
                              if k.startswith(_ITEM_DETAILS)}
        return self

    def get_params(self) -> dict[str, Any]:
        return {p: getattr(self, p) for p in _param_names(type(self))}

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"{type(self).__name__}({args})"


# --- helpers shared by methods --------------------------------------------------------


def pair_differences(X: np.ndarray, groups: np.ndarray, n_units: int,
                     item_labels: np.ndarray | None, method: str) -> np.ndarray:
    """Per pair, ``e(chosen) − e(rejected)``: the input of preference models."""
    if item_labels is None:
        raise MethodInputError(f"method {method!r} learns from the preference labels: fit "
                               "it with item_labels", code="missing_item_labels")
    chosen, rejected = item_labels == "chosen", item_labels == "rejected"
    if (np.bincount(groups[chosen], minlength=n_units) != 1).any() or (
            np.bincount(groups[rejected], minlength=n_units) != 1).any():
        raise MethodInputError(f"method {method!r} needs pairs with one chosen and one "
                               "rejected item each (level 'pair', template "
                               "'prompt_completion' or 'completion')", code="needs_pairs")
    diff = np.empty((n_units, X.shape[1]), dtype=np.float64)
    diff[groups[chosen]] = X[chosen]
    diff[groups[rejected]] -= X[rejected]
    return diff


def subset_units(keep: np.ndarray, X: np.ndarray | None, groups: np.ndarray, meta: Meta,
                 item_labels: np.ndarray | None) -> dict:
    """``fit`` arguments for the units where ``keep`` is true (for methods that run
    another method on part of the data)."""
    item_keep = keep[groups]
    remap = np.full(keep.shape[0], -1, dtype=np.int64)
    remap[keep] = np.arange(int(keep.sum()))
    return {"X": None if X is None else X[item_keep], "groups": remap[groups[item_keep]],
            "meta": {k: np.asarray(v)[keep] for k, v in meta.items()},
            "n_units": int(keep.sum()),
            "item_labels": None if item_labels is None else item_labels[item_keep]}


def unit_matrix(groups: np.ndarray, n_units: int) -> sp.csr_matrix:
    """A sparse (n_units, n_items) matrix averaging each unit's items."""
    import scipy.sparse as sp

    counts = np.bincount(groups, minlength=n_units).astype(np.float64)
    weights = 1.0 / counts[groups]
    return sp.csr_matrix((weights, (groups, np.arange(groups.size))),
                         shape=(n_units, groups.size))


def unit_features(X: np.ndarray, groups: np.ndarray, n_units: int) -> np.ndarray:
    """One vector per unit: the mean of its items' embeddings (the item itself when a
    unit has one item)."""
    if groups.size == n_units and np.array_equal(groups, np.arange(n_units)):
        return np.asarray(X, dtype=np.float32)
    return np.asarray(unit_matrix(groups, n_units) @ X, dtype=np.float32)


def reduce_items(values: np.ndarray, groups: np.ndarray, n_units: int, how: str) -> np.ndarray:
    """Combine per-item values into per-unit values."""
    if how == "sum":
        return np.bincount(groups, weights=values, minlength=n_units)
    if how == "mean":
        return np.bincount(groups, weights=values, minlength=n_units) / np.bincount(
            groups, minlength=n_units)
    if how in ("max", "min"):
        out = np.full(n_units, -np.inf if how == "max" else np.inf)
        (np.maximum if how == "max" else np.minimum).at(out, groups, values)
        return out
    raise ConfigError(f"unknown reduction {how!r}; expected sum, mean, max or min")


# --- registry --------------------------------------------------------------------------

METHODS: dict[str, type[SelectionMethod]] = {}


def register(cls: type[SelectionMethod]) -> type[SelectionMethod]:
    METHODS[cls.name] = cls
    return cls


def _param_names(cls: type) -> list[str]:
    sig = inspect.signature(cls.__init__)
    return [p for p in sig.parameters if p != "self"]


def make_method(name: str, **params: Any) -> SelectionMethod:
    """Build a registered method from its name and parameters. Unknown parameters and
    values of the wrong type (by the constructor's annotations) are refused here, before
    any work; so are the nested methods of composite ones (``base``, ``quality``)."""
    if name not in METHODS:
        raise ConfigError(f"unknown method {name!r}; available: {', '.join(sorted(METHODS))}",
                          code="unknown_method")
    cls = METHODS[name]
    unknown = sorted(set(params) - set(_param_names(cls)))
    if unknown:
        raise ConfigError(f"method {name!r} has no parameter(s) {unknown}; its parameters are "
                          f"{_param_names(cls)}", code="invalid_parameters")
    try:
        _params_model(cls).model_validate(params)
    except ValidationError as exc:
        err = exc.errors()[0]
        field = ".".join(str(x) for x in err["loc"])
        raise ConfigError(f"method {name!r}, parameter {field!r}: {err['msg']}",
                          code="invalid_parameters", parameter=field) from None
    for nested in ("base", "quality"):  # composite methods name another method
        if isinstance(params.get(nested), str):
            make_method(params[nested], **(params.get(f"{nested}_params") or {}))
    return cls(**params)


@cache
def _params_model(cls: type) -> type[BaseModel]:
    """A pydantic model of a method's constructor: its parameters, types and defaults."""
    hints = get_type_hints(cls.__init__, include_extras=True)  # keep the bounds
    fields = {p.name: (hints.get(p.name, Any), p.default)
              for p in list(inspect.signature(cls.__init__).parameters.values())[1:]}
    return create_model(f"{cls.__name__}Params", __config__=ConfigDict(
        extra="forbid", strict=True), **fields)


def _type_name(hint: Any) -> str:
    """A parameter's type as a reader writes it (``int | None``), its bounds left to
    ``_bounds``."""
    origin = get_origin(hint)
    if origin is Annotated:
        return _type_name(get_args(hint)[0])
    if origin in (Union, types.UnionType):
        return " | ".join(_type_name(a) for a in get_args(hint))
    if origin is Literal:
        return f"Literal[{', '.join(repr(a) for a in get_args(hint))}]"
    if hint is type(None):
        return "None"
    return getattr(hint, "__name__", str(hint))


_BOUND_KEYS = ("minimum", "exclusiveMinimum", "maximum", "exclusiveMaximum")


def _bounds(prop: dict[str, Any]) -> dict[str, Any]:
    """A parameter's numeric bounds from its JSON schema (``anyOf`` for ``int | None``)."""
    for part in [prop, *prop.get("anyOf", [])]:
        found = {k: part[k] for k in _BOUND_KEYS if k in part}
        if found:
            return found
    return {}


def describe_methods() -> list[dict[str, Any]]:
    """Every method with its summary and parameters (name, default, type)."""
    out = []
    for name in sorted(METHODS):
        cls = METHODS[name]
        sig = inspect.signature(cls.__init__)
        hints = get_type_hints(cls.__init__, include_extras=True)
        schema = _params_model(cls).model_json_schema()["properties"]
        params = []
        for p in list(sig.parameters.values())[1:]:
            params.append({"name": p.name, "default": p.default,
                           "type": _type_name(hints.get(p.name, Any)),
                           "bounds": _bounds(schema.get(p.name, {}))})
        out.append({"name": name, "summary": cls.summary,
                    "needs_embeddings": cls.needs_embeddings, "params": params})
    return out
