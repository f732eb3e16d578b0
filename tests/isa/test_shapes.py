"""Every supported shape is detected, normalised and round-trips, on real rows."""

from __future__ import annotations

import pytest

from isa import IngestError, PreferenceFile
from isa.export import export_record, write_records
from tests.conftest import write_jsonl


def _distinct(rows: list[dict]) -> list[dict]:
    """Pairs where neither answer is a prefix of the other (a real AlpacaEval row has a
    rejected answer that is the first sentence of the chosen one: no implicit prompt can
    be cut from such a pair, and the reader says so)."""
    return [r for r in rows if not (r["chosen"].startswith(r["rejected"])
                                    or r["rejected"].startswith(r["chosen"]))]


def _shape_rows(name: str, rows: list[dict]) -> list[dict]:
    """Real AlpacaEval pairs rewritten in each shape."""
    out = []
    for i, r in enumerate(rows):
        p, c, j = r["prompt"], r["chosen"], r["rejected"]
        user = [{"role": "user", "content": p}]
        if name == "standard":
            out.append(r)
        elif name == "implicit_prompt":
            out.append({"chosen": f"Q: {p}\nA: {c}", "rejected": f"Q: {p}\nA: {j}",
                        "judge": r["judge"]})
        elif name == "conversational":
            out.append({"prompt": user, "chosen": [{"role": "assistant", "content": c}],
                        "rejected": [{"role": "assistant", "content": j}]})
        elif name == "conversational_implicit":
            out.append({"chosen": user + [{"role": "assistant", "content": c}],
                        "rejected": user + [{"role": "assistant", "content": j}]})
        elif name == "kto":
            out.append({"prompt": p, "completion": c if i % 2 else j, "label": bool(i % 2)})
        elif name == "openai":
            out.append({"input": {"messages": user},
                        "preferred_output": [{"role": "assistant", "content": c}],
                        "non_preferred_output": [{"role": "assistant", "content": j}]})
    return out


SHAPES = ["standard", "implicit_prompt", "conversational", "conversational_implicit", "kto",
          "openai"]


@pytest.mark.parametrize("shape", SHAPES)
def test_shape_is_detected_and_round_trips(tmp_path, alpaca_rows, shape):
    rows = _shape_rows(shape, _distinct(alpaca_rows)[:30])
    data = PreferenceFile(write_jsonl(tmp_path / "in.jsonl", rows))
    first = list(data)
    assert data.report.shape == shape
    assert len(first) == 30
    # written back in the input's shape (the raw records) and re-read: identical
    write_records((e.raw for e in first), tmp_path / "out.jsonl")
    again = PreferenceFile(tmp_path / "out.jsonl")
    second = list(again)
    assert again.report.shape == shape
    key = lambda e: (e.row_id, e.prompt, e.chosen, e.rejected, e.completion, e.label)  # noqa: E731
    assert [key(e) for e in first] == [key(e) for e in second]


def test_normalised_fields_match_the_source(tmp_path, alpaca_rows):
    src = _distinct(alpaca_rows)[:25]
    for shape in ("conversational", "openai", "conversational_implicit"):
        ex = list(PreferenceFile(write_jsonl(tmp_path / f"{shape}.jsonl",
                                             _shape_rows(shape, src))))
        assert [e.prompt[0]["content"] for e in ex] == [r["prompt"] for r in src]
        assert [e.chosen[0]["content"] for e in ex] == [r["chosen"] for r in src]
        assert [e.rejected[0]["content"] for e in ex] == [r["rejected"] for r in src]
    ex = list(PreferenceFile(write_jsonl(tmp_path / "i.jsonl", _shape_rows("implicit_prompt",
                                                                          src))))
    for e, r in zip(ex, src, strict=True):
        # TRL's shared-prefix rule: the prompt is the common prefix of the two texts
        assert e.prompt + e.chosen == f"Q: {r['prompt']}\nA: {r['chosen']}"
        assert e.prompt + e.rejected == f"Q: {r['prompt']}\nA: {r['rejected']}"
        assert e.prompt.startswith(f"Q: {r['prompt']}\nA:")
        assert e.extra == {"judge": r["judge"]}


def test_hh_raw_known_row_is_split_at_the_last_assistant_turn(hh_rows, tmp_path):
    data = PreferenceFile(write_jsonl(tmp_path / "hh.jsonl", hh_rows))
    ex = list(data)
    assert data.report.shape == "hh_raw"
    first = ex[0]
    assert first.prompt.startswith("\n\nHuman: what are some pranks with a pen i can do?")
    assert first.prompt.endswith("\n\nHuman: okay some of these do not have anything to do "
                                 "with pens\n\nAssistant:")
    assert first.chosen.startswith(" No, sorry!  All of these involve a pen")
    assert first.rejected.startswith(" There are lots of funny things you can do with pens")
    for e, r in zip(ex, hh_rows, strict=True):
        assert e.prompt + e.chosen == r["chosen"]
        assert e.prompt + e.rejected == r["rejected"]
        assert "\n\nAssistant:" not in e.chosen.split("\n\nHuman:")[0]


def test_hh_rows_whose_last_turns_disagree_use_the_last_shared_turn():
    from isa.ingest.shapes import parse_record

    chosen = "\n\nHuman: hi\n\nAssistant: Hello. Human: sneaky\n\nAssistant: more"
    rejected = "\n\nHuman: hi\n\nAssistant: Go away."
    ex = parse_record("hh_raw", {"chosen": chosen, "rejected": rejected}, row_id="x", row=0,
                      line=1, raw={}, extra={})
    assert ex.prompt == "\n\nHuman: hi\n\nAssistant:"
    assert ex.chosen == " Hello. Human: sneaky\n\nAssistant: more"
    assert ex.rejected == " Go away."


def test_implicit_prompt_pair_without_a_difference_is_named(tmp_path, alpaca_rows):
    bad = next(r for r in alpaca_rows if r["chosen"].startswith(r["rejected"]))
    rows = _shape_rows("implicit_prompt", [alpaca_rows[0], bad])
    with pytest.raises(IngestError) as exc:
        list(PreferenceFile(write_jsonl(tmp_path / "x.jsonl", rows)))
    assert exc.value.code == "no_difference" and exc.value.details["line"] == 2


def test_shape_override_and_violations(tmp_path, alpaca_rows):
    path = write_jsonl(tmp_path / "x.jsonl", alpaca_rows[:3])
    with pytest.raises(IngestError) as exc:
        list(PreferenceFile(path, shape="kto"))
    assert exc.value.code == "missing_field" and exc.value.details["field"] == "completion"


def test_kto_labels_from_csv_text(tmp_path):
    path = tmp_path / "k.csv"
    path.write_text("prompt,completion,label\nhi,there,true\nhi,go away,0\nhi,x,maybe\n")
    data = PreferenceFile(path, on_invalid="skip")
    ex = list(data)
    assert [e.label for e in ex] == [True, False]
    assert data.report.skipped[0].to_dict()["line"] == 4


@pytest.mark.parametrize("export", ["trl", "kto", "openai"])
def test_export_shapes_read_back(tmp_path, hh_rows, export):
    ex = list(PreferenceFile(write_jsonl(tmp_path / "hh.jsonl", hh_rows[:20])))
    records = [r for e in ex for r in export_record(e, export, None)]
    write_records(records, tmp_path / "out.jsonl")
    back = PreferenceFile(tmp_path / "out.jsonl")
    parsed = list(back)
    expected_shape = {"trl": "standard", "kto": "kto", "openai": "openai"}[export]
    assert back.report.shape == expected_shape
    if export == "trl":
        assert [(e.prompt, e.chosen, e.rejected) for e in parsed] == [
            (e.prompt, e.chosen, e.rejected) for e in ex]
    elif export == "kto":
        assert len(parsed) == 40
        assert [e.label for e in parsed[:2]] == [True, False]
        assert parsed[0].completion == ex[0].chosen and parsed[1].completion == ex[0].rejected
    else:  # HH dialogue turns become OpenAI messages
        assert parsed[0].prompt[0] == {"role": "user",
                                       "content": "what are some pranks with a pen i can do?"}
        assert parsed[0].prompt[-1]["role"] == "user"
        assert parsed[0].chosen[0]["content"] == ex[0].chosen.strip()
