"""ISA as map/reduce over shards gives the single-process subset, in the same order, on
real data."""

from __future__ import annotations

import numpy as np
import pytest

from isa.select.isa import ISA
from isa.select.sharded import (
    ISAModel,
    merge_bounds,
    merge_top_k,
    score_shard,
    shard_scores,
    top_k,
)
from tests.conftest import HH_SAMPLE, read_rows, write_jsonl


@pytest.fixture(scope="module")
def hh_units(sentence_encoder, tmp_path_factory):
    from isa import PreferenceFile
    from isa.embed.base import embed_texts
    from isa.pipeline import read_units

    path = write_jsonl(tmp_path_factory.mktemp("hh") / "hh.jsonl", read_rows(HH_SAMPLE, 300))
    units, _ = read_units(PreferenceFile(path))
    X, _ = embed_texts(units.texts, sentence_encoder)
    return units, X


def _sharded(params: dict, X: np.ndarray, groups: np.ndarray, n_units: int, k: int,
             cuts: list[int]) -> tuple[np.ndarray, np.ndarray]:
    """What the service's tasks do, each step with only its shard: fit on the sample,
    map per shard, reduce bounds, score and merge the shards' top k."""
    planner = ISA(**params)
    idx = planner.fit_sample(X.shape[0])
    model = ISAModel.fit(planner, X if idx is None else X[idx])
    bounds_of, maps = [], []
    edges = [0, *cuts, n_units]
    for u0, u1 in zip(edges[:-1], edges[1:], strict=True):
        items = np.flatnonzero((groups >= u0) & (groups < u1))
        worker = model.restore(ISA(**params))  # a fresh method, as in another process
        shard = score_shard(worker, X[items])
        maps.append((u0, u1, items, shard))
        bounds_of.append(shard.bounds)
    bounds = merge_bounds(bounds_of)
    parts = []
    for u0, u1, items, shard in maps:
        scores = shard_scores(ISA(**params), shard, groups[items] - u0, u1 - u0, bounds)
        parts.append(top_k(scores, k, offset=u0))
    return merge_top_k(parts, k)


@pytest.mark.parametrize("params", [
    {"max_fit_samples": 400},  # fitted on a seeded sample of the 600 items
    {"covariance_type": "full", "pca_components": 16},
    {"n_components": 3, "pair_reduce": "max", "random_state": 7},
])
def test_map_reduce_top_k_equals_the_single_process_selection(hh_units, params):
    units, X = hh_units
    n_units = len(units)
    labels = np.asarray(units.text_labels)
    single = ISA(**params).fit(X, groups=units.groups, item_labels=labels)
    for k, cuts in ((30, [37, 100, 101, 250]), (n_units, [150]), (5, [])):
        scores, got = _sharded(params, X, units.groups, n_units, k, cuts)
        assert got.tolist() == single.ranking_[:k].tolist()
        # the same subset in the same order; scores equal up to float32 rounding (a PCA
        # projection or a BLAS product over one shard may round its last bit unlike the
        # whole matrix's, by how the CPU's kernel blocks it): so relative to the scores'
        # scale, since Δ is a difference of log-likelihoods and a score near 0 keeps the
        # absolute error, not the relative one
        want = single.scores_[single.ranking_[:k]]
        np.testing.assert_allclose(scores, want, rtol=1e-5,
                                   atol=1e-5 * float(np.abs(single.scores_).max()))


def test_merge_top_k_breaks_ties_by_the_lower_unit():
    a = top_k(np.array([1.0, 3.0, 3.0]), 2, offset=0)
    b = top_k(np.array([3.0, 2.0]), 2, offset=3)
    scores, units = merge_top_k([b, a], 4)
    assert units.tolist() == [1, 2, 3, 4] and scores.tolist() == [3.0, 3.0, 3.0, 2.0]
