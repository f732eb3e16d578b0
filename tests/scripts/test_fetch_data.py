"""scripts/fetch_data.py's offline parts: which annotation files it reads, how an
annotation becomes a pair, and the prompt split (the downloads need a network)."""

from __future__ import annotations

import importlib.util

from tests.conftest import ROOT

spec = importlib.util.spec_from_file_location("fetch_data", ROOT / "scripts" / "fetch_data.py")
fetch_data = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
spec.loader.exec_module(fetch_data)  # type: ignore[union-attr]


def test_only_the_two_judges_annotation_files_are_read():
    tree = {"tree": [{"path": p} for p in (
        "results/gpt4/alpaca_eval_gpt4/annotations.json",
        "results/gpt4/weighted_alpaca_eval_gpt4_turbo/annotations.json",
        "results/gpt4/alpaca_eval_cot_gpt4_turbo_fn/annotations.json",
        "results/gpt4/model_outputs.json", "docs/alpaca_eval_gpt4/annotations.json")]}
    assert fetch_data.alpaca_annotation_paths(tree) == [
        "results/gpt4/alpaca_eval_gpt4/annotations.json",
        "results/gpt4/weighted_alpaca_eval_gpt4_turbo/annotations.json"]


def test_an_annotation_becomes_a_pair_with_the_preferred_output_first():
    base = {"instruction": "q", "output_1": "a", "output_2": "b", "generator_1": "m1",
            "generator_2": "m2", "dataset": "koala", "annotator": "alpaca_eval_gpt4"}
    rows = list(fetch_data.alpaca_pairs([
        {**base, "preference": 2.0}, {**base, "preference": 1.2},
        {**base, "preference": 1.5}, {**base, "preference": None}]))
    assert rows == [
        {"prompt": "q", "chosen": "b", "rejected": "a", "source": "koala", "chosen_model": "m2",
         "rejected_model": "m1", "judge": "alpaca_eval_gpt4", "margin": 1.0},
        {"prompt": "q", "chosen": "a", "rejected": "b", "source": "koala", "chosen_model": "m1",
         "rejected_model": "m2", "judge": "alpaca_eval_gpt4", "margin": 0.6}]


def test_the_prompt_split_is_by_text_and_about_a_fifth():
    prompts = [f"instruction {i}" for i in range(2000)]
    test = [p for p in prompts if fetch_data.is_test_prompt(p)]
    assert 0.17 < len(test) / len(prompts) < 0.23
    assert [p for p in reversed(prompts) if fetch_data.is_test_prompt(p)] == test[::-1]
