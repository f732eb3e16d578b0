"""The public preference layouts beyond TRL's own, normalised to the same ``Example`` fields.

Each parser takes one (column-mapped) record and returns a list of field dicts: one per
preference pair the row holds (a row of N rated answers holds several). Keys besides the
``Example`` fields go under ``derived``: per-pair numeric columns such as
``score_chosen``/``score_rejected`` that feed the ``margin`` method.

- ``ultrafeedback_binarized`` (HuggingFaceH4/ultrafeedback_binarized): ``prompt`` a
  string, ``chosen``/``rejected`` message lists that usually repeat the prompt turn; the
  prompt is their shared leading messages, or the prompt string as a user turn when the
  lists hold only the answers.
- ``orca`` (Intel/orca_dpo_pairs): ``system``, ``question``, ``chosen``, ``rejected``
  strings; the prompt becomes a system + user conversation.
- ``pku_saferlhf`` (PKU-Alignment/PKU-SafeRLHF): ``prompt``, ``response_0``,
  ``response_1`` and ``better_response_id`` (0 or 1); map ``safer_response_id`` onto
  ``better_response_id`` to prefer the safer answer.
- ``shp`` (stanfordnlp/SHP): ``history``, ``human_ref_A``, ``human_ref_B`` and
  ``labels`` (1: A is preferred); ``score_A``/``score_B`` become the pair's scores.
- ``ranked`` (UltraFeedback raw, Nectar): a prompt (``prompt`` or ``instruction``) and a
  list of answers (``completions`` or ``answers``), each with its text (``response``,
  ``answer``, ``text`` or ``content``) and a rating (``overall_score``, ``score`` or
  ``rating``, higher is better) or a ``rank`` (1 is best). Pairs by ``pairing``:
  ``best_vs_worst`` (one pair a row, the default) or ``best_vs_each`` (the best answer
  against every lower-rated one; pair ``k`` gets the row id ``<row_id>/<k>``, ``k`` the
  rejected answer's position in the list).
"""

from __future__ import annotations

from typing import Any, Literal

from .fields import (
    ShapeViolation,
    choice,
    maybe_json,
    message_list,
    number,
    shared_messages,
    string,
)

Pairing = Literal["best_vs_worst", "best_vs_each"]
PAIRINGS: tuple[str, ...] = ("best_vs_worst", "best_vs_each")

RANKED_PROMPTS = ("prompt", "instruction")
RANKED_ANSWERS = ("completions", "answers")
_ANSWER_TEXT = ("response", "answer", "text", "content")
_ANSWER_RATING = ("overall_score", "score", "rating")
_ANSWER_MODEL = ("model", "model_name")


def ultrafeedback_binarized(r: dict[str, Any]) -> list[dict[str, Any]]:
    prompt = string(r, "prompt")
    chosen = message_list(maybe_json(r.get("chosen")), "chosen")
    rejected = message_list(maybe_json(r.get("rejected")), "rejected")
    n = shared_messages(chosen, rejected)
    shared = chosen[:n]
    if not any(m["role"] == "user" for m in shared):
        # the lists hold only the answers: the prompt string is the user's turn
        shared = [*shared, {"role": "user", "content": prompt}]
    return [{"kind": "pair", "prompt": shared, "chosen": chosen[n:], "rejected": rejected[n:]}]


def orca(r: dict[str, Any]) -> list[dict[str, Any]]:
    system = r.get("system")
    if system is not None and not isinstance(system, str):
        raise ShapeViolation("wrong_type", f"expected a string, found {type(system).__name__}",
                             "system")
    prompt = [{"role": "user", "content": string(r, "question")}]
    if system and system.strip():
        prompt.insert(0, {"role": "system", "content": system})
    return [{"kind": "pair", "prompt": prompt,
             "chosen": [{"role": "assistant", "content": string(r, "chosen")}],
             "rejected": [{"role": "assistant", "content": string(r, "rejected")}]}]


def pku_saferlhf(r: dict[str, Any]) -> list[dict[str, Any]]:
    answers = (string(r, "response_0"), string(r, "response_1"))
    better = choice(r, "better_response_id", (0, 1))
    if answers[0] == answers[1]:
        raise ShapeViolation("no_difference", "the two responses are identical", "response_1")
    return [{"kind": "pair", "prompt": string(r, "prompt", allow_empty=True),
             "chosen": answers[better], "rejected": answers[1 - better]}]


def shp(r: dict[str, Any]) -> list[dict[str, Any]]:
    a, b = string(r, "human_ref_A"), string(r, "human_ref_B")
    a_wins = choice(r, "labels", (1, 0)) == 1
    fields: dict[str, Any] = {"kind": "pair", "prompt": string(r, "history", allow_empty=True),
                              "chosen": a if a_wins else b, "rejected": b if a_wins else a}
    if r.get("score_A") not in (None, "") and r.get("score_B") not in (None, ""):
        sa, sb = number(r["score_A"], "score_A"), number(r["score_B"], "score_B")
        fields["derived"] = {"score_chosen": sa if a_wins else sb,
                             "score_rejected": sb if a_wins else sa}
    return [fields]


def ranked(r: dict[str, Any], pairing: Pairing = "best_vs_worst") -> list[dict[str, Any]]:
    prompt_field = next((f for f in RANKED_PROMPTS if f in r), RANKED_PROMPTS[0])
    prompt = string(r, prompt_field, allow_empty=True)
    list_field = next((f for f in RANKED_ANSWERS if f in r), RANKED_ANSWERS[0])
    answers = maybe_json(r.get(list_field))
    if not isinstance(answers, list):
        raise ShapeViolation("wrong_type", "expected a list of answers, found "
                             f"{type(answers).__name__}", list_field)
    rated = [x for x in (_rated_answer(a, i, list_field) for i, a in enumerate(answers)) if x]
    if len(rated) < 2:
        raise ShapeViolation("too_few_answers", f"{len(rated)} rated answer(s); a pair needs "
                             "two", list_field)
    best = max(rated, key=lambda x: x[1])  # the first of equally rated bests
    others = [x for x in rated if x[1] < best[1]]
    if not others:
        raise ShapeViolation("no_preference", "every answer is rated the same", list_field)
    if pairing == "best_vs_worst":
        others = [min(others, key=lambda x: x[1])]
    return [{"kind": "pair", "prompt": prompt, "chosen": best[2], "rejected": worse[2],
             "suffix": None if pairing == "best_vs_worst" else str(worse[0]),
             "derived": {"score_chosen": best[1], "score_rejected": worse[1],
                         "chosen_model": best[3], "rejected_model": worse[3]}}
            for worse in others]


def _rated_answer(answer: Any, index: int,
                  list_field: str) -> tuple[int, float, str, str | None] | None:
    """``(position, rating, text, model)``; a rank counts as a rating of ``-rank``. An
    answer without a usable rating is left out (raw sets mark failed ratings so)."""
    where = f"{list_field}[{index}]"
    if not isinstance(answer, dict):
        raise ShapeViolation("wrong_type", f"expected an object, found {type(answer).__name__}",
                             where)
    text_key = next((k for k in _ANSWER_TEXT if k in answer), None)
    if text_key is None:
        raise ShapeViolation("missing_field", f"an answer needs one of {list(_ANSWER_TEXT)}",
                             where)
    text = string(answer, text_key)
    rating: float | None = None
    for key in _ANSWER_RATING:
        if answer.get(key) is not None:
            try:
                rating = number(answer[key], f"{where}.{key}")
            except ShapeViolation:
                return None  # "N/A" and the like: no rating
            break
    else:
        if answer.get("rank") is not None:
            try:
                rating = -number(answer["rank"], f"{where}.rank")
            except ShapeViolation:
                return None  # "N/A": unranked, as an unusable rating is
    if rating is None:
        return None
    model = next((answer[k] for k in _ANSWER_MODEL if isinstance(answer.get(k), str)), None)
    return index, rating, text, model
