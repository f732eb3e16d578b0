"""The public preference layouts people download, each made of real AlpacaEval rows
rewritten in it: detected (or named), normalised, selected, exported in every shape, and the
``trl``/``kto`` exports accepted by TRL's own data utilities and trainers unchanged."""

from __future__ import annotations

import json
from collections import defaultdict

import pytest

from isa import Budget, PreferenceFile, make_method, run_selection
from isa.align import ModelRegistry
from isa.export import write_subsets
from tests.conftest import ALPACA_SAMPLE, HH_SAMPLE, read_rows, write_jsonl
from tests.isa.test_export_consumers import _openai_problems

N = 24


def _pairs(alpaca_rows: list[dict]) -> list[dict]:
    return [r for r in alpaca_rows if r["chosen"].strip() and r["rejected"].strip()
            and r["chosen"] != r["rejected"]][:N]


def _user(p: str) -> list[dict]:
    return [{"role": "user", "content": p}]


def _assistant(t: str) -> list[dict]:
    return [{"role": "assistant", "content": t}]


def layout_rows(layout: str, rows: list[dict]) -> list[dict]:
    """Real pairs written as the layout's public data set writes them."""
    out = []
    for i, r in enumerate(rows):
        p, c, j, m = r["prompt"], r["chosen"], r["rejected"], r["margin"]
        if layout == "ultrafeedback_binarized":  # HuggingFaceH4/ultrafeedback_binarized
            out.append({"prompt": p, "prompt_id": f"id{i}",
                        "chosen": _user(p) + _assistant(c), "rejected": _user(p) + _assistant(j),
                        "messages": _user(p) + _assistant(c),
                        "score_chosen": 5.0 + 5 * m, "score_rejected": 5.0})
        elif layout == "orca":  # Intel/orca_dpo_pairs
            out.append({"system": "You are a helpful assistant." if i % 2 else "",
                        "question": p, "chosen": c, "rejected": j})
        elif layout == "pku_saferlhf":  # PKU-Alignment/PKU-SafeRLHF
            first = i % 2
            answers = (j, c) if first else (c, j)
            out.append({"prompt": p, "response_0": answers[0], "response_1": answers[1],
                        "better_response_id": first, "safer_response_id": 1 - first,
                        "is_response_0_safe": True})
        elif layout == "shp":  # stanfordnlp/SHP
            a_wins = i % 2 == 0
            out.append({"post_id": f"p{i}", "history": p,
                        "human_ref_A": c if a_wins else j, "human_ref_B": j if a_wins else c,
                        "labels": int(a_wins), "score_A": 10 + i if a_wins else 3,
                        "score_B": 3 if a_wins else 10 + i, "score_ratio": 2.0})
        elif layout == "standard":
            out.append({"prompt": p, "chosen": c, "rejected": j, "margin": m})
        elif layout == "implicit_prompt":
            out.append({"chosen": f"Q: {p}\nA: {c}", "rejected": f"Q: {p}\nA: {j}"})
        elif layout == "conversational_implicit":
            out.append({"chosen": _user(p) + _assistant(c), "rejected": _user(p) + _assistant(j)})
        elif layout == "kto":
            out.append({"prompt": p, "completion": c if i % 2 else j, "label": bool(i % 2)})
        elif layout == "trl_conversational":
            out.append({"prompt": _user(p), "chosen": _assistant(c), "rejected": _assistant(j)})
        elif layout == "openai":
            out.append({"input": {"messages": _user(p)}, "preferred_output": _assistant(c),
                        "non_preferred_output": _assistant(j)})
    return out


def ranked_rows(style: str) -> list[dict]:
    """Prompts with several judged answers each (AlpacaEval repeats prompts), rated by
    how often the judge preferred each answer: UltraFeedback raw or Nectar's layout."""
    wins: dict[str, dict[str, list]] = defaultdict(dict)
    for r in read_rows(ALPACA_SAMPLE, 500):
        for text, model, won in ((r["chosen"], r["chosen_model"], 1),
                                 (r["rejected"], r["rejected_model"], 0)):
            entry = wins[r["prompt"]].setdefault(text, [model, 0])
            entry[1] += won
    out = []
    for prompt, answers in wins.items():
        if len(answers) < 3 or len({w for _, w in answers.values()}) < 2:
            continue
        items = list(answers.items())
        if style == "ultrafeedback":
            out.append({"instruction": prompt, "source": "alpaca_eval",
                        "completions": [{"model": m, "response": t, "overall_score": float(w)}
                                        for t, (m, w) in items]})
        else:  # nectar: rank 1 is best
            order = sorted(range(len(items)), key=lambda k: -items[k][1][1])
            rank = {k: n + 1 for n, k in enumerate(order)}
            out.append({"prompt": prompt, "answers": [
                {"answer": t, "model": m, "rank": rank[k]} for k, (t, (m, _)) in
                enumerate(items)]})
    assert len(out) >= 5, "the sample has too few prompts with three judged answers"
    return out[:12]


LAYOUTS = ["ultrafeedback_binarized", "orca", "pku_saferlhf", "shp"]


@pytest.mark.parametrize("layout", LAYOUTS)
def test_each_layout_is_detected_and_keeps_the_preferred_answer(tmp_path, alpaca_rows, layout):
    pairs = _pairs(alpaca_rows)
    data = PreferenceFile(write_jsonl(tmp_path / "in.jsonl", layout_rows(layout, pairs)))
    examples = list(data)
    assert data.report.shape == layout
    assert data.report.rows_valid == data.report.examples == len(pairs)
    for ex, src in zip(examples, pairs, strict=True):
        chosen = ex.chosen if isinstance(ex.chosen, str) else ex.chosen[-1]["content"]
        rejected = ex.rejected if isinstance(ex.rejected, str) else ex.rejected[-1]["content"]
        prompt = ex.prompt if isinstance(ex.prompt, str) else ex.prompt[-1]["content"]
        assert (prompt, chosen, rejected) == (src["prompt"], src["chosen"], src["rejected"])
    first = examples[0]
    if layout == "ultrafeedback_binarized":  # the prompt turn is cut from the answers
        assert first.prompt == _user(pairs[0]["prompt"])
        assert first.chosen == _assistant(pairs[0]["chosen"])
        assert first.extra["score_chosen"] > first.extra["score_rejected"]
    if layout == "orca":
        assert [m["role"] for m in examples[1].prompt] == ["system", "user"]
        assert [m["role"] for m in examples[0].prompt] == ["user"]  # an empty system: none
    if layout == "shp":  # the scores follow the preferred answer
        assert all(e.extra["score_chosen"] > e.extra["score_rejected"] for e in examples)


def test_pku_prefers_the_safer_answer_when_mapped(tmp_path, alpaca_rows):
    pairs = _pairs(alpaca_rows)
    path = write_jsonl(tmp_path / "pku.jsonl", layout_rows("pku_saferlhf", pairs))
    safer = list(PreferenceFile(path, column_map={"safer_response_id": "better_response_id"}))
    assert [e.chosen for e in safer] == [p["rejected"] for p in pairs]


@pytest.mark.parametrize("style", ["ultrafeedback", "nectar"])
def test_ranked_answers_become_pairs_by_the_chosen_rule(tmp_path, alpaca_rows, style):
    rows = ranked_rows(style)
    path = write_jsonl(tmp_path / "ranked.jsonl", rows)
    worst = PreferenceFile(path)
    one = list(worst)
    assert worst.report.shape == "ranked" and len(one) == len(rows)
    each = PreferenceFile(path, pairing="best_vs_each")
    many = list(each)
    assert each.report.rows_valid == len(rows) and each.report.examples == len(many) > len(rows)
    for ex in many:  # the best answer beats a strictly lower-rated one, scores say by how much
        assert ex.extra["score_chosen"] > ex.extra["score_rejected"]
        assert "/" in ex.row_id and ex.chosen != ex.rejected
    assert len({e.row_id for e in many}) == len(many)
    # best vs worst is the widest of the row's best-vs-each pairs
    by_row = defaultdict(list)
    for ex in many:
        by_row[ex.row].append(ex.extra["score_chosen"] - ex.extra["score_rejected"])
    assert [e.extra["score_chosen"] - e.extra["score_rejected"] for e in one] == [
        max(by_row[e.row]) for e in one]
    # the margin method reads those scores; the input export writes each source row once
    result = run_selection(each, make_method("margin"), Budget(count=len(many) - 1))
    out = tmp_path / "input.jsonl"
    write_subsets(each, result, {out: "input"})
    written = [json.loads(x) for x in out.read_text().splitlines()]
    assert len(written) == len(rows) and written == rows


def test_ranked_rows_without_a_preference_are_named(tmp_path):
    rows = [{"prompt": "q", "answers": [{"answer": "a", "rank": 1}, {"answer": "b", "rank": 1}]},
            {"prompt": "q", "answers": [{"answer": "a", "rank": 1}]},
            {"prompt": "q", "answers": [{"answer": "a", "rank": 1}, {"answer": "b", "rank": 2}]}]
    data = PreferenceFile(write_jsonl(tmp_path / "r.jsonl", rows), on_invalid="skip")
    (ex,) = list(data)
    assert (ex.chosen, ex.rejected) == ("a", "b")
    assert dict(data.report.skipped_by_code) == {"no_preference": 1, "too_few_answers": 1}
    assert data.report.skipped[0].location.field == "answers"


def test_exports_never_write_a_source_column_over_a_canonical_field(tmp_path, alpaca_rows):
    pairs = _pairs(alpaca_rows)[:6]
    rows = [{**r, "label": "spam", "completion": "x", "row_id": f"theirs-{i}",
             "messages": [{"role": "user", "content": "other"}]} for i, r in enumerate(pairs)]
    data = PreferenceFile(write_jsonl(tmp_path / "c.jsonl", rows), shape="standard")
    result = run_selection(data, make_method("random", random_state=0), Budget(count=6))
    paths = {tmp_path / f"{s}.jsonl": s for s in ("trl", "kto")}
    write_subsets(data, result, paths)
    trl = [json.loads(x) for x in (tmp_path / "trl.jsonl").read_text().splitlines()]
    kto = [json.loads(x) for x in (tmp_path / "kto.jsonl").read_text().splitlines()]
    by_prompt = {r["prompt"]: r for r in rows}
    for rec in trl:
        src = by_prompt[rec["prompt"]]
        assert rec["chosen"] == src["chosen"] and rec["row_id"] != src["row_id"]
        assert rec["source_row_id"] == src["row_id"] and rec["source_label"] == "spam"
        assert rec["source_messages"] == src["messages"] and "messages" not in rec
    assert sorted(r["label"] for r in kto) == [False] * 6 + [True] * 6
    assert all(r["completion"] in (by_prompt[r["prompt"]]["chosen"],
                                   by_prompt[r["prompt"]]["rejected"]) for r in kto)
    assert all(r["source_completion"] == "x" for r in kto)


# --- every layout through selection, every export shape, and TRL ------------------------

ALL = [*LAYOUTS, "standard", "implicit_prompt", "trl_conversational", "conversational_implicit",
       "openai", "hh_raw", "ranked"]


@pytest.fixture(scope="module")
def tokenizer():
    from transformers import AutoTokenizer

    path = str(ModelRegistry().resolve("tiny-llama-random"))
    tok = AutoTokenizer.from_pretrained(path, local_files_only=True)
    tok.pad_token = tok.pad_token or tok.eos_token
    return path, tok


def _exports(tmp_path, alpaca_rows, layout):
    if layout == "ranked":
        rows = ranked_rows("nectar")
    elif layout == "hh_raw":
        rows = read_rows(HH_SAMPLE, 30)
    else:
        rows = layout_rows(layout, [r for r in _pairs(alpaca_rows)  # a cuttable shared prefix
                                    if not r["chosen"].startswith(r["rejected"])])
    data = PreferenceFile(write_jsonl(tmp_path / "in.jsonl", rows))
    result = run_selection(data, make_method("random", random_state=0), Budget(count=8))
    paths = {tmp_path / f"{s}.jsonl": s for s in ("input", "trl", "kto", "openai")}
    paths[tmp_path / "trl.parquet"] = "trl"
    paths[tmp_path / "trl.csv"] = "trl"
    counts = write_subsets(data, result, paths)
    return data, {s: p for p, s in paths.items() if p.suffix == ".jsonl"}, counts, paths


@pytest.mark.parametrize("layout", ALL)
def test_every_export_of_every_layout_passes_trls_data_utilities(tmp_path, alpaca_rows,
                                                                 tokenizer, layout):
    from datasets import load_dataset
    from trl.data_utils import (
        is_conversational,
        maybe_apply_chat_template,
        maybe_extract_prompt,
    )

    data, exports, counts, paths = _exports(tmp_path, alpaca_rows, layout)
    assert counts[exports["trl"]] == 8 and counts[exports["kto"]] == 16
    _, tok = tokenizer
    for shape, keys in (("trl", {"prompt", "chosen", "rejected"}),
                        ("kto", {"prompt", "completion", "label"})):
        ds = load_dataset("json", data_files=str(exports[shape]), split="train")
        for row in ds:
            assert maybe_extract_prompt(row) == row  # an explicit prompt, of the answers' kind
            conv = {k: is_conversational({k: row[k]}) for k in keys - {"label"}}
            assert len(set(conv.values())) == 1, conv
            templated = maybe_apply_chat_template(row, tok)
            assert all(isinstance(templated[k], str) for k in keys - {"label"})
    # the trl export reads back as the same pairs, from JSON Lines, Parquet and CSV alike
    original = {e.row_id: (e.prompt, e.chosen, e.rejected) for e in data}
    for path, shape in paths.items():
        if shape != "trl":
            continue
        back = {e.row_id: (e.prompt, e.chosen, e.rejected)
                for e in PreferenceFile(path, id_field="row_id")}
        assert len(back) == 8 and all(back[k] == original[k] for k in back), path.name
    # the openai export follows OpenAI's preference fine-tuning rules
    lines = exports["openai"].read_text().splitlines()
    assert len(lines) == 8 and [p for x in lines for p in _openai_problems(x)] == []


@pytest.mark.slow
@pytest.mark.parametrize("layout", ["ultrafeedback_binarized", "orca", "ranked"])
def test_trl_trains_two_steps_on_each_layouts_exports(tmp_path, alpaca_rows, tokenizer,
                                                      layout):
    from datasets import load_dataset
    from transformers import AutoModelForCausalLM
    from trl import DPOConfig, DPOTrainer, KTOConfig, KTOTrainer

    _, exports, _, _ = _exports(tmp_path, alpaca_rows, layout)
    path, tok = tokenizer
    common = dict(max_steps=2, per_device_train_batch_size=4, max_length=96, report_to=[],
                  save_strategy="no", use_cpu=True, disable_tqdm=True, logging_steps=1)
    model = lambda: AutoModelForCausalLM.from_pretrained(path, local_files_only=True)  # noqa: E731
    dpo = DPOTrainer(model=model(), args=DPOConfig(output_dir=str(tmp_path / "d"), **common),
                     train_dataset=load_dataset("json", data_files=str(exports["trl"]),
                                                split="train"), processing_class=tok)
    kto = KTOTrainer(model=model(), ref_model=model(),
                     args=KTOConfig(output_dir=str(tmp_path / "k"), **common),
                     train_dataset=load_dataset("json", data_files=str(exports["kto"]),
                                                split="train"), processing_class=tok)
    for trainer in (dpo, kto):
        trainer.train()
        losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
        assert trainer.state.global_step == 2 and len(losses) == 2
        assert all(x == x for x in losses)  # finite, not NaN


def test_the_cli_reads_ranked_rows_with_the_pairing_asked_for(tmp_path):
    import subprocess
    import sys

    path = write_jsonl(tmp_path / "ranked.jsonl", ranked_rows("ultrafeedback"))
    counts = {}
    for pairing in ("best_vs_worst", "best_vs_each"):
        proc = subprocess.run([sys.executable, "-m", "isa", "validate", str(path), "--pairing",
                               pairing], capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stderr
        report = json.loads(proc.stdout)
        assert report["shape"] == "ranked" and report["rows_valid"] == 12
        counts[pairing] = report["examples"]
    assert counts["best_vs_worst"] == 12 < counts["best_vs_each"]
    proc = subprocess.run([sys.executable, "-m", "isa", "validate", str(path), "--pairing",
                           "all"], capture_output=True, text=True, timeout=300)
    assert proc.returncode != 0 and "pairing must be one of" in proc.stderr


def test_a_kto_layouts_export_passes_trls_data_utilities(tmp_path, alpaca_rows, tokenizer):
    from trl.data_utils import maybe_apply_chat_template

    rows = layout_rows("kto", _pairs(alpaca_rows))
    data = PreferenceFile(write_jsonl(tmp_path / "kto_in.jsonl", rows))
    result = run_selection(data, make_method("random", random_state=0), Budget(count=8))
    out = tmp_path / "kto.jsonl"
    assert write_subsets(data, result, {out: "kto"})[out] == 8
    _, tok = tokenizer
    for row in (json.loads(x) for x in out.read_text().splitlines()):
        src = next(r for r in rows if r["prompt"] == row["prompt"])
        assert (row["completion"], row["label"]) == (src["completion"], src["label"])
        templated = maybe_apply_chat_template(row, tok)
        assert isinstance(templated["completion"], str)


def test_edge_rows_of_the_layouts(tmp_path, alpaca_rows):
    from isa.pipeline import read_units

    pairs = _pairs(alpaca_rows)[:4]
    # a pair file with an "answers" column of its own stays a pair file
    extra = [{**p, "answers": ["x", "y"]} for p in pairs]
    data = PreferenceFile(write_jsonl(tmp_path / "s.jsonl", extra))
    assert len(list(data)) == 4 and data.report.shape == "standard"
    # SHP from CSV with empty score cells: valid pairs, no scores
    shp = tmp_path / "shp.csv"
    shp.write_text("history,human_ref_A,human_ref_B,labels,score_A,score_B\n"
                   "q,first,second,0,,\nq2,a,b,1,4,2\n")
    rows = list(PreferenceFile(shp))
    assert rows[0].chosen == "second" and "score_chosen" not in rows[0].extra
    assert rows[1].extra["score_chosen"] == 4.0
    # a rank that is not a number leaves that answer out, as an unusable rating does
    nectar = [{"prompt": "q", "answers": [{"answer": "a", "rank": 1},
                                          {"answer": "b", "rank": "N/A"},
                                          {"answer": "c", "rank": 2}]}]
    (ex,) = list(PreferenceFile(write_jsonl(tmp_path / "n.jsonl", nectar)))
    assert (ex.chosen, ex.rejected) == ("a", "c")
    # item level, best vs each: a row's best answer is one item, not one per pair
    ranked = [{"prompt": "q", "answers": [{"answer": t, "rank": k + 1}
                                          for k, t in enumerate("abcd")]}]
    table, _ = read_units(PreferenceFile(write_jsonl(tmp_path / "r.jsonl", ranked),
                                         pairing="best_vs_each"), level="item")
    assert sorted(table.sides) == ["chosen", "rejected", "rejected", "rejected"]
    # a column mapped onto a name the file has too: the file's own is kept aside
    both = [{"prompt": "ignored", "question": p["prompt"], "chosen": p["chosen"],
             "rejected": p["rejected"]} for p in pairs]
    ex = list(PreferenceFile(write_jsonl(tmp_path / "b.jsonl", both),
                             column_map={"question": "prompt"}))
    assert ex[0].prompt == pairs[0]["prompt"] and ex[0].extra["source_prompt"] == "ignored"
