"""Alignment with TRL on a tiny random Llama (SmolLM2's tokenizer): plumbing, not quality."""

from __future__ import annotations

import pytest

from isa import PreferenceFile
from isa.align import AlignConfig, ModelRegistry, run_alignment
from tests.conftest import write_jsonl


@pytest.fixture(scope="module")
def tiny_model():
    return ModelRegistry().resolve("tiny-llama-random")


@pytest.fixture(scope="module")
def pairs(tmp_path_factory, alpaca_rows):
    path = write_jsonl(tmp_path_factory.mktemp("align") / "p.jsonl", alpaca_rows[:24])
    return list(PreferenceFile(path))


@pytest.mark.parametrize(("method", "lora"), [("dpo", True), ("kto", False)])
def test_training_runs_saves_and_reloads(tmp_path, tiny_model, pairs, method, lora):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    seen = []
    cfg = AlignConfig(method=method, lora=lora, max_steps=3, batch_size=2, max_length=96,
                      learning_rate=1e-3)
    result = run_alignment(pairs[:16], tiny_model, tmp_path, cfg, eval_pairs=pairs[16:],
                           progress=lambda s, t, loss: seen.append((s, t, loss)))
    assert result.steps == 3 and not result.stopped_early
    assert [s for s, _, _ in seen] == [1, 2, 3] and all(t == 3 for _, t, _ in seen)
    assert all(isinstance(h["loss"], float) for h in result.history)
    ev = result.evaluation
    assert ev["pairs"] == 8 and 0 <= ev["policy"]["reward_accuracy"] <= 1
    assert (result.model_dir / ("adapter_config.json" if lora else "config.json")).is_file()
    if lora:
        from peft import AutoPeftModelForCausalLM

        model = AutoPeftModelForCausalLM.from_pretrained(str(result.model_dir))
    else:
        model = AutoModelForCausalLM.from_pretrained(str(result.model_dir))
    tok = AutoTokenizer.from_pretrained(str(result.model_dir))
    out = model.generate(**tok("Hello", return_tensors="pt"), max_new_tokens=5, do_sample=False)
    assert out.shape[1] > 1


def test_stop_request_ends_training_at_the_next_step(tmp_path, tiny_model, pairs):
    steps = []
    cfg = AlignConfig(max_steps=50, batch_size=2, max_length=64)
    result = run_alignment(pairs, tiny_model, tmp_path, cfg,
                           progress=lambda s, t, loss: steps.append(s),
                           should_stop=lambda: len(steps) >= 2)
    # asked after step 2 was logged: the trainer stops at the end of the next step
    assert result.stopped_early and result.steps == 3
    assert (result.model_dir / "adapter_config.json").is_file()  # what was trained is saved


def test_long_dialogues_keep_their_answers_within_max_length():
    from transformers import AutoTokenizer

    from isa.align.models import ModelRegistry
    from isa.align.train import fit_prompts

    tok = AutoTokenizer.from_pretrained(str(ModelRegistry().resolve("tiny-llama-random")))
    turn = "\n\nHuman: tell me more about the history of bread.\n\nAssistant: sure, "
    rows = [{"prompt": turn * 40 + "\n\nHuman: and now?\n\nAssistant:",
             "chosen": " Bread is old.", "rejected": " No."}]
    fitted = fit_prompts(rows, tok, 64, ("chosen", "rejected"))[0]
    n = len(tok(fitted["prompt"] + fitted["chosen"], add_special_tokens=False)["input_ids"])
    assert n <= 64 and fitted["prompt"].endswith("Assistant:")  # the end of the dialogue
    assert fitted["chosen"] == rows[0]["chosen"]  # the answer is whole
    short = {"prompt": "Hi?", "chosen": " Hello.", "rejected": " Go."}
    assert fit_prompts([short], tok, 64, ("chosen", "rejected")) == [short]
