"""The exports load where users load them: every subset shape through
``datasets.load_dataset("json", ...)``, the trl and kto shapes straight into TRL's
DPOTrainer / KTOTrainer (a few steps on the tiny model), and the openai shape against the
published rules of OpenAI's preference (DPO) fine-tuning format."""

from __future__ import annotations

import json

import pytest

from isa import Budget, PreferenceFile, make_method, run_selection, write_subset
from isa.align import ModelRegistry
from tests.conftest import ALPACA_SAMPLE, HH_SAMPLE

K = 12


@pytest.fixture(scope="module", params=[HH_SAMPLE, ALPACA_SAMPLE], ids=["hh", "alpaca"])
def exports(request, tmp_path_factory):
    """Each export shape of a 12-pair random subset (random loads no model)."""
    data = PreferenceFile(request.param)
    result = run_selection(data, make_method("random", random_state=0), Budget(count=K))
    out = tmp_path_factory.mktemp("exports")
    paths = {}
    for shape in ("input", "trl", "kto", "openai"):
        paths[shape] = out / f"{shape}.jsonl"
        write_subset(data, result, paths[shape], shape=shape)
    return paths


@pytest.mark.parametrize(("shape", "rows", "columns"), [
    ("input", K, set()), ("trl", K, {"prompt", "chosen", "rejected"}),
    ("kto", 2 * K, {"prompt", "completion", "label"}),
    ("openai", K, {"input", "preferred_output", "non_preferred_output"})])
def test_every_shape_loads_with_datasets(exports, shape, rows, columns):
    from datasets import load_dataset

    ds = load_dataset("json", data_files=str(exports[shape]), split="train")
    assert ds.num_rows == rows and columns <= set(ds.column_names)
    if shape == "kto":
        assert sorted(ds["label"]) == [False] * K + [True] * K


@pytest.fixture(scope="module")
def tiny():
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = str(ModelRegistry().resolve("tiny-llama-random"))
    tok = AutoTokenizer.from_pretrained(path, local_files_only=True)
    tok.pad_token = tok.pad_token or tok.eos_token
    return path, tok, lambda: AutoModelForCausalLM.from_pretrained(path, local_files_only=True)


@pytest.mark.slow
@pytest.mark.parametrize("trainer", ["dpo", "kto"])
def test_trl_trains_on_the_export_unchanged(exports, tiny, tmp_path, trainer):
    from datasets import load_dataset
    from trl import DPOConfig, DPOTrainer, KTOConfig, KTOTrainer

    _, tok, model = tiny
    shape = "trl" if trainer == "dpo" else "kto"
    train = load_dataset("json", data_files=str(exports[shape]), split="train")
    common = dict(output_dir=str(tmp_path), max_steps=2, per_device_train_batch_size=4,
                  max_length=128, report_to=[], save_strategy="no", use_cpu=True,
                  disable_tqdm=True, logging_steps=1)
    if trainer == "dpo":
        t = DPOTrainer(model=model(), args=DPOConfig(**common), train_dataset=train,
                       processing_class=tok)
    else:
        t = KTOTrainer(model=model(), ref_model=model(), args=KTOConfig(**common),
                       train_dataset=train, processing_class=tok)
    t.train()
    losses = [h["loss"] for h in t.state.log_history if "loss" in h]
    assert t.state.global_step == 2 and len(losses) == 2
    assert all(isinstance(x, float) and x == x for x in losses)  # finite, not NaN


_ROLES = {"system", "developer", "user", "assistant"}


def _openai_problems(line: str) -> list[str]:
    """OpenAI's preference fine-tuning rules: ``input.messages`` a non-empty list of
    role/content messages ending with a user turn; ``preferred_output`` and
    ``non_preferred_output`` exactly one non-empty assistant message each, different from
    each other; nothing else at the top level."""
    row, bad = json.loads(line), []
    extra = set(row) - {"input", "preferred_output", "non_preferred_output"}
    if extra:
        bad.append(f"unknown keys {extra}")
    msgs = row.get("input", {}).get("messages")
    if not msgs:
        return [*bad, "input.messages missing or empty"]
    for m in msgs:
        if m.get("role") not in _ROLES or not isinstance(m.get("content"), str) \
                or not m["content"].strip():
            bad.append(f"bad input message {m}")
    if msgs[-1].get("role") != "user":
        bad.append("input does not end with a user message")
    for side in ("preferred_output", "non_preferred_output"):
        out = row.get(side)
        if not (isinstance(out, list) and len(out) == 1 and out[0].get("role") == "assistant"
                and isinstance(out[0].get("content"), str) and out[0]["content"].strip()):
            bad.append(f"{side} is not one non-empty assistant message: {out}")
    if row.get("preferred_output") == row.get("non_preferred_output"):
        bad.append("preferred and non-preferred outputs are the same")
    return bad


def test_the_openai_shape_follows_the_preference_format_rules(exports):
    lines = exports["openai"].read_text().splitlines()
    assert len(lines) == K
    assert [p for line in lines for p in _openai_problems(line)] == []


def test_the_rule_check_catches_what_it_should():
    ok = {"input": {"messages": [{"role": "user", "content": "hi"}]},
          "preferred_output": [{"role": "assistant", "content": "a"}],
          "non_preferred_output": [{"role": "assistant", "content": "b"}]}
    assert _openai_problems(json.dumps(ok)) == []
    for broken in ({**ok, "row_id": "x"}, {**ok, "input": {"messages": []}},
                   {**ok, "preferred_output": [{"role": "user", "content": "a"}]},
                   {**ok, "non_preferred_output": ok["preferred_output"]}):
        assert _openai_problems(json.dumps(broken))
