"""GRPO's reward (stsflow.finetune.grpo): the final answer of a completion against the SFT item's
reference answer, on hand-written cases."""

from __future__ import annotations

import pytest

from stsflow.finetune.grpo import (exact_match, exact_match_reward, final_answer, normalise,
                                   reference_answer)


@pytest.mark.parametrize("text,answer", [
    ("Step 1: 6 × 11 = 66.\nStep 2: 100 - 69 = 31.\nThe answer is 31.", "31"),
    ("so the total is 12.\n#### 1,250", "1,250"),
    ("We get \\boxed{\\frac{1}{2}} in the end.", "\\frac{1}{2}"),
    ("First 3 + 4 = 7, then 7 × 2 = 14", "14"),
    ("The answer is (C).", "(C)"),
    ("the answer is: -4.5", "-4.5"),
    # the last statement counts: a model that corrects itself
    ("The answer is 3. Wait, no. The answer is 5.", "5"),
    ("The answer is 2.5 km.\nDone", "2.5 km"),
    ("he gets back 31, which is what he needs", "31"),  # a comma after a number is not its own
    ("**The answer is 31.**", "31"),  # markdown emphasis is not part of the answer
    ("x \\boxed{\\frac{\\sqrt{3}}{2}} y", "\\frac{\\sqrt{3}}{2}"),  # nested braces
    ("no number here", None),
    ("", None),
])
def test_final_answer_reads_the_stated_answer(text, answer):
    assert final_answer(text) == answer


@pytest.mark.parametrize("raw,norm", [
    ("31.", "31"), ("$1,250", "1250"), ("31.0", "31"), ("-0.50", "-0.5"), ("(C).", "c"),
    ("  Paris ", "paris"), ("1,25", "1,25"),  # not a thousands separator: left as it is
])
def test_normalise(raw, norm):
    assert normalise(raw) == norm


@pytest.mark.parametrize("completion,reference,reward", [
    ("Step 1: 66 + 3 = 69.\nThe answer is 31.", "31", 1.0),
    ("The answer is 31.0", "31", 1.0),
    ("#### $1,250", "1250", 1.0),
    ("The answer is 32.", "31", 0.0),
    # a number in the reasoning is not the answer when one is stated
    ("31 apples minus 2. The answer is 29.", "31", 0.0),
    ("I do not know.", "31", 0.0),
    ("The answer is 31.", None, 0.0),  # no reference: never rewarded
    ("The answer is (B).", "B", 1.0),
    # a unit or a word after a numeric answer does not count against it; another number does
    ("The answer is 4 hours.", "4", 1.0),
    ("The answer is 52 years old.", "52", 1.0),
    ("The answer is **31**.", "31", 1.0),
    ("The answer is 31!", "31", 1.0),
    ("The answer is 3 and 4.", "4", 0.0),
    # an answer written as a computation states its result after the last "="
    ("The answer is 100 - 69 = 31.", "31", 1.0),
    ("The answer is $100 - $69 = $31.", "31", 1.0),
    ("The answer is 31 - 5 = 26.", "31", 0.0),
    ("The answer is 2.5 km.", "2.5", 1.0),
    ("\\boxed{\\frac{\\sqrt{3}}{2}}", "\\frac{\\sqrt{3}}{2}", 1.0),
    ("The answer is Paris.", "paris", 1.0),
    ("The answer is Paris, France.", "paris", 0.0),
])
def test_exact_match_on_hand_written_cases(completion, reference, reward):
    assert exact_match(completion, reference) == reward


def test_reward_function_takes_trl_arguments_and_the_answer_column():
    rewards = exact_match_reward(prompts=["p1", "p2", "p3"],
                                 completions=["The answer is 4.", "#### 7", [
                                     {"role": "assistant", "content": "so the answer is 9"}]],
                                 answer=["4", "8", "9"], completion_ids=[[1], [2], [3]])
    assert rewards == [1.0, 0.0, 1.0]


def test_reference_answer_prefers_the_answer_column():
    assert reference_answer({"answer": "12", "solution": "The answer is 13."}) == "12"
    assert reference_answer({"solution": "4 + 9 = 13. The answer is 13."}) == "13"
    assert reference_answer({"answer": " ", "solution": "#### 5"}) == "5"
    assert reference_answer({"solution": "no answer"}) is None
