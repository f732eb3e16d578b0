"""Every method's parameters carry their bounds in the constructor's annotations, and
``make_method`` (hence the gateway, at POST) holds every value to them: the bounds are
read back from ``describe_methods``, so a new method's parameters are tested here too."""

from __future__ import annotations

import math

import pytest

from isa.errors import ConfigError
from isa.select import describe_methods, make_method

BOUNDED = [(m["name"], p["name"], p["type"], p["bounds"])
           for m in describe_methods() for p in m["params"] if p["bounds"]]


def edges(kind: str, bounds: dict) -> tuple[list, list]:
    """(values at the edges, which must be accepted; values just beyond, refused)."""
    integer = kind.startswith("int")
    step = 1 if integer else 1e-9
    inside, outside = [], []
    if "minimum" in bounds:
        inside.append(bounds["minimum"])
        outside.append(bounds["minimum"] - step)
    if "exclusiveMinimum" in bounds:
        inside.append(bounds["exclusiveMinimum"] + step)
        outside.append(bounds["exclusiveMinimum"])
    if "maximum" in bounds:
        inside.append(bounds["maximum"])
        outside.append(bounds["maximum"] + step)
    if "exclusiveMaximum" in bounds:
        inside.append(bounds["exclusiveMaximum"] - step)
        outside.append(bounds["exclusiveMaximum"])
    return inside, outside


def test_the_methods_the_issue_named_have_bounds():
    named = {(m, p) for m, p, _, _ in BOUNDED}
    assert {("isa", "n_components"), ("density", "n_bits"), ("isa", "pca_components"),
            ("isa", "max_iter"), ("random", "random_state")} <= named
    # every seed of every method is bounded the same way
    seeds = [b for m, p, _, b in BOUNDED if p == "random_state"]
    assert len(seeds) == len(describe_methods())
    assert all(b == {"minimum": 0, "maximum": 2**32 - 1} for b in seeds)


@pytest.mark.parametrize(("method", "param", "kind", "bounds"), BOUNDED,
                         ids=[f"{m}.{p}" for m, p, _, _ in BOUNDED])
def test_each_bound_accepts_its_edge_and_refuses_beyond(method, param, kind, bounds):
    inside, outside = edges(kind, bounds)
    assert inside and outside
    for value in inside:
        assert getattr(make_method(method, **{param: value}), param) == value
    for value in outside:
        with pytest.raises(ConfigError) as err:
            make_method(method, **{param: value})
        assert err.value.code == "invalid_parameters"
        assert err.value.details["parameter"] == param and param in err.value.message
    if kind.startswith("float"):
        for value in (math.nan, math.inf):
            with pytest.raises(ConfigError):
                make_method(method, **{param: value})
