"""The full public sets read whole (skipped, with the reason, when they are not at hand):
every row of each parses, HH dialogues split into prompt and reply without losing a
character, and the AlpacaEval pool and test files share no prompt (benchmarks rely on it).
"""

from __future__ import annotations

import gzip
import json

from isa import PreferenceFile
from isa.embed.templates import join_prompt
from tests.conftest import full_data


def test_every_hh_row_parses_and_reassembles_to_its_text():
    path = full_data("hh_rlhf_harmless_base_test.jsonl.gz")
    data = PreferenceFile(path)
    examples = list(data)
    assert data.report.shape == "hh_raw" and len(examples) == data.report.rows_read == 2312
    with gzip.open(path, "rt", encoding="utf-8") as fh:
        raw = [json.loads(line) for line in fh]
    for ex, row in zip(examples, raw, strict=True):
        assert join_prompt(ex.prompt, ex.chosen) == row["chosen"]
        assert join_prompt(ex.prompt, ex.rejected) == row["rejected"]


def test_alpaca_pool_and_test_parse_and_share_no_prompt():
    prompts = {}
    for name in ("alpaca_eval_prefs_train.jsonl.gz", "alpaca_eval_prefs_test.jsonl.gz"):
        data = PreferenceFile(full_data(name))
        prompts[name] = {ex.prompt for ex in data}
        assert data.report.shape == "standard" and data.report.rows_skipped == 0
        assert data.report.rows_valid > 10_000
    assert not prompts["alpaca_eval_prefs_train.jsonl.gz"] & prompts[
        "alpaca_eval_prefs_test.jsonl.gz"]
