"""Evaluation: answer extraction, prompts, option log-likelihood and NLL against direct
computations, batched generation, summaries and the paired bootstrap."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import domain_records, make_tokenizer, sft_records

from stsflow import evaluate as ev
from stsflow.prompts import COT_TRIGGER, MMLU_PRO_HEADER
from stsflow.segments import Layout, Segmenter

# ----------------------------------------------------------------------------- extraction

EXTRACT_CASES = [
    ("no answer at all", None, "missing"),
    ("", None, "missing"),
    ("Let's see... the answer is (C).", "C", "primary"),
    ("the answer is C because", "C", "primary"),
    ("The answer is (B) and more text after it.", "B", "primary"),
    ("First the answer is (A). On reflection the answer is (D).", "A", "primary"),  # first wins
    ("answer is (J)", "J", "primary"),
    ("answer is (K)", None, "missing"),  # K is no option letter; lower-case words are no letters
    # the official regex is case-sensitive: a lower-case letter gives no primary match
    ("so the answer is (c)", None, "missing"),
    ("so the answer is (c). Final: B", "B", "fallback_last_letter"),
    ("THE ANSWER IS (C)", "C", "fallback_last_letter"),
    ("Answer: B", "B", "fallback_answer"),
    ("reasoning\nanswer: E\nmore", "E", "fallback_answer"),
    ("Answer: B then Answer: D", "D", "fallback_answer"),  # greedy .* -> last on that line
    ("Answer:B", "B", "fallback_answer"),
    ("I pick B, no wait, F", "F", "fallback_last_letter"),
    ("We reason step by step.\n\nG", "G", "fallback_last_letter"),
    ("Options (C) and (D) look plausible", "D", "fallback_last_letter"),
    ("A dog and a cat", "A", "fallback_last_letter"),
]


@pytest.mark.parametrize("text,letter,how", EXTRACT_CASES)
def test_extract_answer(text, letter, how):
    assert ev.extract_answer(text) == (letter, how)


def test_extract_answer_matches_official_code():
    import re

    def official(text):  # TIGER-Lab evaluate_from_local.py, verbatim logic
        m = re.search(r"answer is \(?([A-J])\)?", text)
        if m:
            return m.group(1)
        m = re.search(r".*[aA]nswer:\s*([A-J])", text)
        if m:
            return m.group(1)
        m = re.search(r"\b[A-J]\b(?!.*\b[A-J]\b)", text, re.DOTALL)
        return m.group(0) if m else None

    for text, _, _ in EXTRACT_CASES:
        assert ev.extract_answer(text)[0] == official(text)


# ----------------------------------------------------------------------------- prompts


@pytest.fixture(scope="module")
def tok():
    return make_tokenizer()


@pytest.fixture(scope="module")
def model(tiny):
    return tiny[0]


def items_with_edge_cases():
    items = domain_records("law", 4)
    items[1] = {**items[1], "options": items[1]["options"] + ["N/A", "N/A"]}
    items[2] = {**items[2], "options": [f"o{j}" for j in range(10)], "answer": "H",
                "answer_index": 7}
    items[3] = {**items[3], "options": ["x", "a longer option text", "yz", "q"]}
    return items


def test_prompt_official_wording_and_na_options():
    demos = domain_records("law", 2)
    item = {**domain_records("law", 1, offset=5)[0]}
    item["options"] = item["options"] + ["N/A"]
    p = ev.mmlu_pro_prompt(demos, item, "law")
    header = MMLU_PRO_HEADER.format(subject="law") + "\n"
    assert p.startswith(header + "Question: law question 0?\nOptions:\nA. opt law 0\n")
    assert "\nAnswer: Let's think step by step. It is A. The answer is (A).\n\nQuestion: " in p
    assert p.endswith("D. opt law 3\n" + COT_TRIGGER)
    assert "N/A" not in p
    assert p.count("Question: ") == 3
    # N/A is kept when it is the correct answer, and non-trailing N/A is kept
    rec = {"options": ["a", "N/A", "b", "N/A", "N/A"], "answer_index": 3}
    assert ev.clean_options(rec)["options"] == ["a", "N/A", "b", "N/A"]


def test_prompt_ids_chat_is_one_user_turn(tok):
    seg = Segmenter.for_tokenizer(tok, True)
    prompt = ev.mmlu_pro_prompt([], domain_records("law", 1)[0], "law")
    ids = ev.prompt_ids(seg, prompt, True)
    expected = tok.apply_chat_template([{"role": "user", "content": prompt}], tokenize=False,
                                       add_generation_prompt=True)
    assert tok.decode(ids) == expected
    plain = ev.prompt_ids(Segmenter.for_tokenizer(tok, False), prompt, False)
    assert tok.decode(plain) == "<s>" + prompt


# ------------------------------------------------------------------------- option log-likelihood


def direct_option_logprobs(model, tok, seg, demos, item):
    """Sum of log-probs of each option given the context, one full forward per option, no cache."""
    rec = ev.clean_options(item)
    ctx = seg.head()
    for d in demos:
        ctx += seg.demo(ev.clean_options(d), "domain")
    ctx += seg.query(rec, "domain")
    out = []
    with torch.no_grad():
        for opt in rec["options"]:
            o = tok(str(opt).strip(), add_special_tokens=False)["input_ids"]
            logp = F.log_softmax(model(input_ids=torch.tensor([ctx + o])).logits[0], -1)
            out.append(sum(float(logp[len(ctx) + j - 1, t]) for j, t in enumerate(o)))
    return out


@pytest.mark.parametrize("chat,k_shot,reuse_cache", [(True, 2, True), (False, 0, True),
                                                     (True, 0, False), (False, 2, False),
                                                     (None, 0, True), (None, 1, True)])
def test_option_loglik_matches_direct(model, tok, chat, k_shot, reuse_cache):
    if chat is None:  # a layout with an empty head: with k_shot=0 there is no shared prefix
        seg = Segmenter(tok, Layout(head="", user_open="", user_close_and_gen="\n",
                                    assistant_close="\n\n"))
    else:
        seg = Segmenter.for_tokenizer(tok, chat)
    demos = domain_records("law", 3, offset=10)
    items = items_with_edge_cases()
    rows = ev.eval_option_loglik(model, tok, items, demos, segmenter=seg, k_shot=k_shot,
                                 batch_size=3, reuse_cache=reuse_cache)
    assert [r["question_id"] for r in rows] == [i["question_id"] for i in items]
    n_correct = 0
    for item, row in zip(items, rows):
        direct = direct_option_logprobs(model, tok, seg, demos[:k_shot], item)
        assert len(row["logprob_sum"]) == len(direct) == len(ev.clean_options(item)["options"])
        np.testing.assert_allclose(row["logprob_sum"], direct, atol=2e-4, rtol=1e-5)
        means = [s / n for s, n in zip(direct, row["n_option_tokens"])]
        assert row["logprob_mean"] == pytest.approx(means, abs=1e-4)
        pred = int(np.argmax(means))
        assert row["pred_index"] == pred
        assert row["correct"] == (pred == item["answer_index"])
        n_correct += row["correct"]
    table = ev.accuracy_table(rows, "option_loglik")
    assert table["value"] == pytest.approx(n_correct / len(items))


# ----------------------------------------------------------------------------- NLL


@pytest.mark.parametrize("chat", [True, False])
def test_nll_matches_direct(model, tok, chat):
    seg = Segmenter.for_tokenizer(tok, chat)
    items = domain_records("law", 3)
    items.append({**domain_records("law", 1, offset=7)[0], "cot_content": ""})  # test-split item
    rows = ev.eval_nll(model, tok, items, segmenter=seg, kind="domain", batch_size=3)
    assert [r["reference"] for r in rows] == ["cot", "cot", "cot", "answer"]
    for item, row in zip(items, rows):
        ctx = seg.head() + seg.query(item, "domain")
        if item["cot_content"]:
            resp = seg.response(item, "domain")
        else:
            text = f"The answer is ({item['answer']}). {item['options'][item['answer_index']]}"
            resp = tok(text + seg.layout.assistant_close, add_special_tokens=False)["input_ids"]
        with torch.no_grad():
            logits = model(input_ids=torch.tensor([ctx + resp])).logits[0]
        nll = F.cross_entropy(logits[len(ctx) - 1: -1], torch.tensor(resp))
        assert row["n_tokens"] == len(resp)
        assert row["nll"] == pytest.approx(float(nll), abs=1e-5)
    sft = sft_records(3)
    rows = ev.eval_nll(model, tok, sft, segmenter=seg, kind="sft", batch_size=2)
    assert [r["question_id"] for r in rows] == [r["id"] for r in sft]
    table = ev.accuracy_table(rows, "nll")
    assert table["value"] == pytest.approx(np.mean([r["nll"] for r in rows]))
    assert table["higher_is_better"] is False and table["n_items"] == 3


# ----------------------------------------------------------------------------- generation


@pytest.mark.parametrize("chat", [True, False])
def test_generate_batched_equals_unbatched(model, tok, chat):
    items = domain_records("law", 3, offset=3)
    items[0] = {**items[0], "question": "a much longer question so that left padding is needed?"}
    demos = domain_records("law", 1)
    kw = dict(subject="law", use_chat_template=chat, max_new_tokens=5)
    batched = ev.eval_generate(model, tok, items, demos, batch_size=3, **kw)
    single = ev.eval_generate(model, tok, items, demos, batch_size=1, **kw)
    assert [r["output"] for r in batched] == [r["output"] for r in single]
    for item, row in zip(items, batched):
        assert row["question_id"] == item["question_id"]
        assert (row["pred"], row["how"]) == ev.extract_answer(row["output"])
        assert row["correct"] == (row["pred"] == item["answer"])
        assert 1 <= row["n_generated"] <= 5 and row["k_shot"] == 1
        assert row["finish"] in ("eos", "stop", "length")


def test_generate_drops_demos_to_fit_context(model, tok):
    items = domain_records("law", 1)
    demos = domain_records("law", 3, offset=4)
    full = len(ev.prompt_ids(Segmenter.for_tokenizer(tok, False),
                             ev.mmlu_pro_prompt(demos, items[0], "law"), False))
    rows = ev.eval_generate(model, tok, items, demos, subject="law", use_chat_template=False,
                            max_new_tokens=2, batch_size=1, max_context=full - 50)
    assert rows[0]["k_shot"] == 2 and rows[0]["n_prompt_tokens"] <= full - 52


def test_finish_cuts_at_eos_and_stop_string(tok):
    ids = lambda s: tok(s, add_special_tokens=False)["input_ids"]  # noqa: E731
    eos, pad = [tok.eos_token_id], tok.pad_token_id
    assert ev._finish(tok, ids("the answer is (B)") + eos + [pad] * 3, eos, pad, ["Question:"],
                      30) == ("the answer is (B)", 18, "eos")
    text, n, why = ev._finish(tok, ids("so B.\n\nQuestion: next") + [pad] * 2, eos, pad,
                              ["Question:"], 30)
    assert (text, n, why) == ("so B.\n\n", 21, "stop")
    assert ev._finish(tok, ids("abc"), eos, pad, ["Question:"], 3) == ("abc", 3, "length")


# ----------------------------------------------------------------------------- summaries


def test_accuracy_table_counts():
    rows = [{"question_id": 1, "correct": True, "how": "primary"},
            {"question_id": 2, "correct": False, "how": "fallback_answer"},
            {"question_id": 3, "correct": True, "how": "fallback_last_letter"},
            {"question_id": 4, "correct": False, "how": "missing"}]
    t = ev.accuracy_table(rows, "generate")
    assert t["value"] == 0.5 and t["n_items"] == 4 and t["n_correct"] == 2
    assert t["n_fallback"] == 2 and t["n_missing"] == 1 and t["higher_is_better"]
    with pytest.raises(ValueError):
        ev.accuracy_table(rows, "f1")


def test_bootstrap_ci_contains_delta_and_is_seeded():
    rng = np.random.default_rng(1)
    before = (rng.random(300) < 0.5).astype(float)
    after = np.where(rng.random(300) < 0.2, 1.0 - before, before)
    delta = after.mean() - before.mean()
    lo, hi = ev.bootstrap_delta_ci(before, after, n_boot=2000, seed=0)
    assert lo <= delta <= hi and lo < hi
    assert ev.bootstrap_delta_ci(before, after, n_boot=2000, seed=0) == (lo, hi)
    assert ev.bootstrap_delta_ci(before, after, n_boot=2000, seed=1) != (lo, hi)
    same = ev.bootstrap_delta_ci(before, before, n_boot=200, seed=0)
    assert same == (0.0, 0.0)
    with pytest.raises(ValueError):
        ev.bootstrap_delta_ci([1.0, 0.0], [1.0])


def test_paired_values_align_by_question_id():
    before = [{"question_id": q, "correct": c} for q, c in [(1, True), (2, False), (3, True)]]
    after = [{"question_id": q, "correct": c} for q, c in [(3, False), (1, True), (2, True)]]
    b, a = ev.paired_values(before, after, "accuracy")
    assert b.tolist() == [1.0, 0.0, 1.0] and a.tolist() == [1.0, 1.0, 0.0]
    with pytest.raises(ValueError):
        ev.paired_values(before, after[:2], "accuracy")
