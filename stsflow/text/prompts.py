"""How records become text: the one place that fixes prompt wording.

Two record kinds flow through the workflow (see ``stsflow.data.corpora``):

* SFT records (LIMO schema): ``id, question, solution, answer``.
  The user turn is the question; the assistant turn is the solution (which ends with the answer).
* Domain records (MMLU-Pro schema): ``question_id, question, options, answer, answer_index,
  cot_content, category, src``. The user turn is the question with lettered options, laid out as
  the official MMLU-Pro chain-of-thought evaluation (TIGER-AI-Lab ``evaluate_from_local.py``) lays
  out a question: ``"Question:\\n<question>\\nOptions:\\nA. <option>\\n..."`` (the last option
  line's newline belongs to what follows: the layout's end of turn, or the CoT trigger in
  ``stsflow.evaluate``). The assistant turn of a worked demonstration is its ``cot_content``.

Every option that reads exactly ``"N/A"`` is removed before options are lettered, in STS queries
as in evaluation, as the official preprocessing does (MMLU-Pro pads questions with fewer than ten
options with "N/A"). Unlike the official script, ``answer_index``/``answer`` are remapped to the
answer's position among the remaining options, so they stay right if an "N/A" ever precedes the
answer (the official script would then score against a letter that now names another option); an
"N/A" that is itself the correct answer is kept. Letters inside a demonstration's ``cot_content``
are not rewritten.
"""

from __future__ import annotations

LETTERS = "ABCDEFGHIJ"

# Official MMLU-Pro CoT wording (TIGER-Lab evaluate_from_local.py), with the subject filled in.
MMLU_PRO_HEADER = (
    "The following are multiple choice questions (with answers) about {subject}. Think step by"
    ' step and then finish your answer with "the answer is (X)" where X is the correct letter choice.'
)
COT_TRIGGER = "Answer: Let's think step by step."
_COT_OPENING = "A: Let's think step by step."  # how MMLU-Pro's cot_content starts
NA_OPTION = "N/A"


def format_options(options: list[str]) -> str:
    return "\n".join(f"{LETTERS[i]}. {opt}" for i, opt in enumerate(options))


def drop_na_options(record: dict) -> dict:
    """A copy of a domain record without its "N/A" options, ``answer_index`` and ``answer``
    remapped to the answer's new position (see the module docstring)."""
    opts = list(record["options"])
    ans = record.get("answer_index")
    if ans is not None and not 0 <= int(ans) < len(opts):
        raise ValueError(f"domain record {record.get('question_id')!r}: answer_index {ans} is not "
                         f"one of its {len(opts)} options; fix the record or its fields: mapping")
    keep = [i for i, o in enumerate(opts) if o != NA_OPTION or (ans is not None and i == int(ans))]
    out = {**record, "options": [opts[i] for i in keep]}
    if ans is not None:
        out["answer_index"] = keep.index(int(ans))
        out["answer"] = LETTERS[out["answer_index"]]
    return out


def mmlu_question(record: dict) -> str:
    """Question plus lettered options ("N/A" options removed), in the official MMLU-Pro layout,
    without the newline that ends the last option line."""
    rec = drop_na_options(record)
    return f"Question:\n{rec['question']}\nOptions:\n{format_options(rec['options'])}"


def mmlu_demo_answer(record: dict) -> str:
    """A demonstration's worked answer as the official evaluation prompt shows it: ``cot_content``
    with "A: Let's think step by step." replaced by the CoT trigger, otherwise untouched."""
    return (record.get("cot_content") or "").replace(_COT_OPENING, COT_TRIGGER)


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


def reference_text(record: dict, kind: str) -> tuple[str, str]:
    """``(text, which)``: the reference response the ``nll`` metric scores
    (``stsflow.evaluate.metrics``); which in {"cot", "answer", "solution"}. A domain record
    without ``cot_content`` (MMLU-Pro test items) is answered by its correct option."""
    if kind == "sft":
        return assistant_text(record, kind), "solution"
    record = drop_na_options(record)  # letters as the query shows them
    if (record.get("cot_content") or "").strip():
        return assistant_text(record, kind), "cot"
    idx = record.get("answer_index")
    if idx is None:
        raise ValueError(f"domain record {record.get('question_id')!r} has neither cot_content nor "
                         "answer_index; no reference answer")
    idx = int(idx)
    return f"The answer is ({LETTERS[idx]}). {str(record['options'][idx]).strip()}", "answer"
