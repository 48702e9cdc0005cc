"""How records become text: the one place that fixes prompt wording.

Two record kinds flow through the workflow (see ``stsflow.corpora``):

* SFT records (LIMO schema): ``id, question, solution, answer``.
  The user turn is the question; the assistant turn is the solution (which ends with the answer).
* Domain records (MMLU-Pro schema): ``question_id, question, options, answer, answer_index,
  cot_content, category, src``. The user turn is the question with lettered options, worded as the
  official MMLU-Pro chain-of-thought evaluation does; the assistant turn of a worked demonstration
  is its ``cot_content``.
"""

from __future__ import annotations

LETTERS = "ABCDEFGHIJ"

# Official MMLU-Pro CoT wording (TIGER-Lab evaluate_from_local.py), with the subject filled in.
MMLU_PRO_HEADER = (
    "The following are multiple choice questions (with answers) about {subject}. Think step by"
    ' step and then finish your answer with "the answer is (X)" where X is the correct letter choice.'
)
COT_TRIGGER = "Answer: Let's think step by step."


def format_options(options: list[str]) -> str:
    return "\n".join(f"{LETTERS[i]}. {opt}" for i, opt in enumerate(options))


def mmlu_question(record: dict) -> str:
    """Question plus lettered options, as in the official MMLU-Pro prompt."""
    return f"Question: {record['question']}\nOptions:\n{format_options(list(record['options']))}"


def mmlu_cot(record: dict) -> str:
    """The worked answer of a demonstration, normalised to start with the CoT trigger."""
    cot = (record.get("cot_content") or "").strip()
    if cot.startswith("A: "):
        cot = "Answer: " + cot[3:]
    if not cot.startswith("Answer:"):
        cot = f"{COT_TRIGGER} {cot}"
    return cot


def user_text(record: dict, kind: str) -> str:
    """The query x of a record: what the model is asked."""
    if kind == "sft":
        return str(record["question"]).strip()
    if kind == "domain":
        return mmlu_question(record)
    raise ValueError(f"unknown record kind {kind!r} (expected 'sft' or 'domain')")


def assistant_text(record: dict, kind: str) -> str:
    """The response y of a record: a worked solution or chain of thought."""
    if kind == "sft":
        return str(record["solution"]).strip()
    if kind == "domain":
        return mmlu_cot(record)
    raise ValueError(f"unknown record kind {kind!r} (expected 'sft' or 'domain')")
