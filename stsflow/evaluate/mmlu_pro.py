"""MMLU-Pro's official evaluation, as its evaluator script does it: the chain-of-thought prompt,
the answer-extraction cascade, and the seeded random guess when no answer is found."""

from __future__ import annotations

import random
import re

from stsflow.text.prompts import (
    COT_TRIGGER,
    LETTERS,
    MMLU_PRO_HEADER,
    drop_na_options,
    mmlu_demo_answer,
    mmlu_question,
)

_PRIMARY = re.compile(r"answer is \(?([A-J])\)?")
_FALLBACK_ANSWER = re.compile(r".*[aA]nswer:\s*([A-J])")
_FALLBACK_LAST = re.compile(r"\b[A-J]\b(?!.*\b[A-J]\b)", re.DOTALL)
STOP_STRINGS = ("Question:",)
HEADER_GAP = "\n\n\n\n"  # initial_prompt.txt ends with three newlines; the script adds one
OFFICIAL_MAX_CONTEXT = 4096  # the script's max_model_length
RANDOM_GUESS_SEED = 12345


# ----------------------------------------------------------------------------- extraction


def extract_answer(text: str | None) -> tuple[str | None, str]:
    """``(letter, how)`` with how in {"primary", "fallback_answer", "fallback_last_letter",
    "missing"} — the official MMLU-Pro extraction cascade."""
    if not text:
        return None, "missing"
    m = _PRIMARY.search(text)
    if m:
        return m.group(1), "primary"
    m = _FALLBACK_ANSWER.search(text)
    if m:
        return m.group(1), "fallback_answer"
    m = _FALLBACK_LAST.search(text)
    if m:
        return m.group(0), "fallback_last_letter"
    return None, "missing"


def random_guess(question_id, n_options: int) -> int:
    """The option index guessed for an unparsed answer: seeded per item (module docstring)."""
    return random.Random(f"{RANDOM_GUESS_SEED}:{question_id}").randint(0, n_options - 1)


def score_output(item: dict, text: str | None) -> dict:
    """Extraction and scoring of one generated answer against the item ("N/A" options removed):
    ``pred``, ``how``, ``guess`` (the random-guess letter of an unparsed answer), ``answer``,
    ``correct``."""
    rec = drop_na_options(item)
    pred, how = extract_answer(text)
    guess = None
    if pred is None:
        guess = LETTERS[random_guess(rec.get("question_id"), len(rec["options"]))]
        how = "random_guess"
    answer = rec.get("answer")
    return {"pred": pred, "how": how, "guess": guess, "answer": answer,
            "correct": answer is not None and (pred or guess) == answer}


# ----------------------------------------------------------------------------- prompts


def mmlu_pro_prompt(demos: list[dict], item: dict, subject: str | None = None) -> str:
    """Plain-text k-shot CoT prompt, laid out as the official MMLU-Pro prompt."""
    subject = subject if subject is not None else item.get("category", "")
    parts = [MMLU_PRO_HEADER.format(subject=subject) + HEADER_GAP]
    for d in demos:
        answer = mmlu_demo_answer(d)
        if not answer.strip():
            raise ValueError(f"demonstration {d.get('question_id')!r} has no cot_content; generate "
                             "needs worked demonstrations (give the domain a demos split with "
                             "cot_content, or set evaluate.k_shot: 0)")
        parts.append(mmlu_question(d) + "\n" + answer + "\n\n")
    parts.append(mmlu_question(item) + "\n" + COT_TRIGGER)
    return "".join(parts)
