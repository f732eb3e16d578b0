"""The whole engine on real data with the real MiniLM encoder: the subset is made of
exact source rows, results do not depend on row order, identical texts embed once."""

from __future__ import annotations

import json
import random

import numpy as np
import pyarrow.parquet as pq
import pytest

from isa import (
    Budget,
    MemoryEmbeddingCache,
    MemoryScoreCache,
    PreferenceFile,
    SelectionPlan,
    SelectionRun,
    default_export_shapes,
    embed_texts,
    make_method,
    run_selection,
    write_scores,
    write_subset,
    write_subsets,
)
from tests.conftest import write_jsonl


@pytest.fixture(scope="module")
def hh_file(tmp_path_factory, hh_rows):
    return write_jsonl(tmp_path_factory.mktemp("hh") / "hh.jsonl", hh_rows)


@pytest.mark.parametrize("method", ["isa", "kcenter", "density", "random"])
def test_subset_is_exact_source_rows_and_scores_rank_them(tmp_path, hh_file, hh_rows,
                                                          sentence_encoder, method):
    data = PreferenceFile(hh_file)
    result = run_selection(data, make_method(method, random_state=3), Budget(fraction=0.1),
                           encoder=sentence_encoder)
    assert result.n_selected == 12  # 10% of 120 pairs
    n = write_subset(data, result, tmp_path / "subset.jsonl")
    subset = [json.loads(line) for line in (tmp_path / "subset.jsonl").read_text().splitlines()]
    assert n == len(subset) == 12
    source = [json.dumps(r, sort_keys=True) for r in hh_rows]
    for row in subset:  # every subset row is a source row, with all its columns
        assert json.dumps(row, sort_keys=True) in source
    write_scores(result, tmp_path / "scores.parquet")
    scores = pq.read_table(tmp_path / "scores.parquet").to_pylist()
    assert len(scores) == 120
    assert sorted(s["rank"] for s in scores) == list(range(1, 121))
    kept = sorted((s for s in scores if s["selected"]), key=lambda s: s["rank"])
    assert [s["rank"] for s in kept] == list(range(1, 13))
    assert {s["source_row"] for s in kept} == {
        source.index(json.dumps(r, sort_keys=True)) for r in subset}
    if method == "isa":
        assert {"log_likelihood_chosen", "delta_rejected", "component_chosen"} <= set(scores[0])
        ranked = sorted(scores, key=lambda s: s["rank"])
        assert all(a["score"] >= b["score"] for a, b in zip(ranked, ranked[1:], strict=False))


@pytest.mark.parametrize("method", ["isa", "kcenter", "density", "random", "consistency",
                                    "clean", "quality_diversity", "length_balanced"])
def test_results_do_not_depend_on_row_order(tmp_path, hh_rows, sentence_encoder, method):
    shuffled = hh_rows[:]
    random.Random(5).shuffle(shuffled)
    picks = []
    for name, rows in (("a", hh_rows), ("b", shuffled)):
        data = PreferenceFile(write_jsonl(tmp_path / f"{name}.jsonl", rows))
        result = run_selection(data, make_method(method), Budget(count=15),
                               encoder=sentence_encoder)
        picks.append(result.selected_keys())
    assert picks[0] == picks[1]


def test_item_level_selection_returns_kto_items(tmp_path, hh_file, sentence_encoder):
    data = PreferenceFile(hh_file)
    result = run_selection(data, make_method("isa"), Budget(count=20), level="item",
                           encoder=sentence_encoder)
    assert len(result.units) == 240
    write_subset(data, result, tmp_path / "items.jsonl", shape="kto")
    items = [json.loads(x) for x in (tmp_path / "items.jsonl").read_text().splitlines()]
    assert len(items) == 20
    assert {i["item"] for i in items} <= {"chosen", "rejected"}
    assert all(i["label"] == (i["item"] == "chosen") for i in items)
    with pytest.raises(Exception, match="kto"):
        write_subset(data, result, tmp_path / "x.jsonl", shape="input")


def test_identical_texts_embed_once_and_cache_skips_everything(sentence_encoder):
    texts = ["a cat", "a dog", "a cat", "a bird", "a dog"]
    cache = MemoryEmbeddingCache()
    X, stats = embed_texts(texts, sentence_encoder, cache=cache)
    assert (stats.texts, stats.unique, stats.embedded) == (5, 3, 3)
    assert np.array_equal(X[0], X[2]) and np.array_equal(X[1], X[4])
    Y, stats2 = embed_texts(texts[::-1], sentence_encoder, cache=cache)
    assert stats2.embedded == 0 and stats2.cached == 3
    assert np.array_equal(Y[::-1], X)


def test_margin_selection_needs_no_encoder(tmp_path, alpaca_rows):
    data = PreferenceFile(write_jsonl(tmp_path / "a.jsonl", alpaca_rows))
    result = run_selection(data, make_method("margin"), Budget(count=10), encoder=None)
    top = [alpaca_rows[i]["margin"] for i in result.units.source_rows[result.selected]]
    assert min(top) >= sorted((r["margin"] for r in alpaca_rows), reverse=True)[9]
    assert result.embed_stats is None


def test_encoder_embeds_meaningfully(sentence_encoder):
    X = sentence_encoder.encode(["How do I bake bread?", "Recipe for baking a loaf of bread",
                                 "The stock market fell today"])
    assert X.shape == (3, 384)
    assert np.allclose(np.linalg.norm(X, axis=1), 1, atol=1e-5)
    assert X[0] @ X[1] > X[0] @ X[2] + 0.3


def test_disk_cache_survives_a_new_process_object(tmp_path, sentence_encoder):
    from isa.embed.base import DiskEmbeddingCache

    cache = DiskEmbeddingCache(tmp_path / "emb")
    X, _ = embed_texts(["one", "two"], sentence_encoder, cache=cache)
    cache.save()
    again = DiskEmbeddingCache(tmp_path / "emb")
    Y, stats = embed_texts(["two", "one", "three"], sentence_encoder, cache=again)
    assert (stats.cached, stats.embedded) == (2, 1)
    assert np.array_equal(Y[1], X[0]) and np.array_equal(Y[0], X[1])


def test_a_second_budget_restores_the_scores_and_loads_no_encoder(hh_file, sentence_encoder):
    scores, cache = MemoryScoreCache(), MemoryEmbeddingCache()
    loads = []

    def encoder():  # noqa: ANN202
        loads.append(1)
        return sentence_encoder

    def plan(budget: Budget) -> SelectionPlan:
        return SelectionPlan(PreferenceFile(hh_file), make_method("isa"), budget,
                             encoder=encoder, encoder_key="minilm", source_key="hh-120")

    first = SelectionRun(plan(Budget(count=10)), cache=cache, scores=scores).run()
    second = SelectionRun(plan(Budget(count=30)), cache=cache, scores=scores).run()
    assert len(loads) == 1 and not first.score_cache_hit and second.score_cache_hit
    assert np.array_equal(first.method.ranking_, second.method.ranking_)
    assert second.n_selected == 30 and first.selected_keys() <= second.selected_keys()
    # anything that changes the scores changes the key
    other = plan(Budget(count=10))
    other.method = make_method("isa", covariance_type="spherical")
    assert other.score_key() != plan(Budget(count=10)).score_key()


def test_write_subsets_matches_one_file_per_shape(tmp_path, hh_file, sentence_encoder):
    data = PreferenceFile(hh_file)
    result = run_selection(data, make_method("random"), Budget(count=7))
    shapes = default_export_shapes(result.units)
    assert shapes == ("input", "kto", "trl", "openai")
    written = write_subsets(data, result, {tmp_path / f"all-{s}.jsonl": s for s in shapes})
    for shape in shapes:
        alone = write_subset(data, result, tmp_path / f"one-{shape}.jsonl", shape=shape)
        assert written[tmp_path / f"all-{shape}.jsonl"] == alone
        assert ((tmp_path / f"all-{shape}.jsonl").read_bytes()
                == (tmp_path / f"one-{shape}.jsonl").read_bytes())


@pytest.mark.parametrize("level", ["pair", "item"])
def test_units_read_without_texts_keep_every_column_and_find_texts_by_key(tmp_path, hh_rows,
                                                                          level):
    """A table read without texts (map/reduce jobs too large to hold them) equals the full
    table in everything but the texts; each text's key is its content hash; a streaming
    pass gives back exactly the texts asked for, once each."""
    from isa.embed.base import text_key
    from isa.pipeline import read_units, texts_of

    rows = random.Random(5).sample(hh_rows, len(hh_rows))  # file order is not unit order
    data = PreferenceFile(write_jsonl(tmp_path / "hh.jsonl", rows))
    full, _ = read_units(data, level=level)
    lean, _ = read_units(data, level=level, keep_texts=False)
    assert lean.texts == [] and lean.prompt_keys == [] and full.texts
    for name in ("row_ids", "sides", "text_labels"):
        assert getattr(lean, name) == getattr(full, name)
    assert np.array_equal(lean.groups, full.groups)
    assert np.array_equal(lean.source_rows, full.source_rows)
    assert lean.meta.keys() == full.meta.keys()
    for k in full.meta:
        np.testing.assert_array_equal(lean.meta[k], full.meta[k])
    assert lean.row_ids == sorted(lean.row_ids)  # canonical order, whatever the file's
    assert [bytes(k) for k in lean.text_keys] == [text_key(t) for t in full.texts]
    wanted = [full.texts[i] for i in (3, 0, 17)]
    found = list(texts_of(data, {text_key(t) for t in wanted}, level=level,
                          template=full.template))
    assert sorted(found) == sorted(set(wanted))


def test_key_ids_number_distinct_keys_by_first_appearance():
    from isa.pipeline import key_ids

    rng = np.random.default_rng(0)
    distinct = rng.integers(0, 256, (50, 16), dtype=np.uint8)
    distinct[1, :15] = distinct[0, :15]  # differ in the last byte only
    rows = rng.integers(0, 50, 400)
    first, inverse = key_ids(distinct[rows])
    seen: dict[bytes, int] = {}
    expect = [seen.setdefault(bytes(distinct[r]), len(seen)) for r in rows]
    assert inverse.tolist() == expect
    assert [bytes(distinct[rows][i]) for i in first] == list(seen)
    alone, none = key_ids(distinct[rows], inverse=False)
    assert none is None and alone.tolist() == first.tolist()
    assert first.dtype == inverse.dtype == alone.dtype == np.int64
