"""Evaluation: answer extraction, prompts, option log-likelihood and NLL against direct
computations, batched generation, summaries and the paired bootstrap."""

from __future__ import annotations

import inspect

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import (
    direct_layer_sums,
    domain_records,
    forward_hooks,
    make_tokenizer,
    sft_records,
)

from stsflow.analysis import observed
from stsflow.evaluate import engines, harness, metrics, mmlu_pro, scoring, summary
from stsflow.text.prompts import drop_na_options, user_text
from stsflow.text.segments import Layout, Segmenter

# ----------------------------------------------------------------------------- extraction

# Outputs and the letter the official evaluator (TIGER-AI-Lab MMLU-Pro evaluate_from_local.py)
# reads from them, worked out by hand from its three rules: "answer is (X)" (first occurrence,
# case-sensitive), else the last "Answer: X" on the first line that has one, else the last
# standalone capital A-J anywhere; None means it falls back to a random guess.
EXTRACT_CASES = [
    ("no answer at all", None, "missing"),
    ("", None, "missing"),
    ("Let's see... the answer is (C).", "C", "primary"),
    ("the answer is C because", "C", "primary"),
    ("The answer is (B) and more text after it.", "B", "primary"),
    ("First the answer is (A). On reflection the answer is (D).", "A", "primary"),  # first wins
    ("the answer is (A)\nAnswer: B", "A", "primary"),  # the first rule beats a later "Answer:"
    ("answer is (J)", "J", "primary"),
    ("answer is (K)", None, "missing"),  # K is no option letter; lower-case words are no letters
    ("so the answer is (c)", None, "missing"),  # case-sensitive: no lower-case letter
    ("so the answer is (c). Final: B", "B", "fallback_last_letter"),
    ("THE ANSWER IS (C)", "C", "fallback_last_letter"),
    ("the answer is ( C )", "C", "fallback_last_letter"),  # a space inside the parentheses
    ("The answer is: B", "B", "fallback_last_letter"),  # "answer is:" is neither rule 1 nor 2
    ("Answer: B", "B", "fallback_answer"),
    ("Answer:\nC", "C", "fallback_answer"),  # the blank after the colon may be a newline
    ("reasoning\nanswer: E\nmore", "E", "fallback_answer"),
    ("Answer: B then Answer: D", "D", "fallback_answer"),  # greedy: last one on that line
    ("Answer: A\nlater Answer: C", "A", "fallback_answer"),  # but the first line that has one
    ("Answer:B", "B", "fallback_answer"),
    ("Answer: (B)", "B", "fallback_last_letter"),  # "(" is no blank: rule 2 fails
    ("ANSWER: C", "C", "fallback_last_letter"),  # rule 2 wants "nswer" in lower case
    ("I pick B, no wait, F", "F", "fallback_last_letter"),
    ("We reason step by step.\n\nG", "G", "fallback_last_letter"),
    ("Options (C) and (D) look plausible", "D", "fallback_last_letter"),
    ("A dog and a cat", "A", "fallback_last_letter"),
    ("option K or CD", None, "missing"),  # K is out of range, CD is no single letter
    ("I choose option K or CD", "I", "fallback_last_letter"),  # the pronoun I is a letter
]


@pytest.mark.parametrize("text,letter,how", EXTRACT_CASES)
def test_extract_answer(text, letter, how):
    assert mmlu_pro.extract_answer(text) == (letter, how)


def item_with_na_before_answer():
    # "N/A" in the middle: the official preprocessing removes it, so "x" (C before) is B
    return {"question_id": 77, "question": "Pick x.", "options": ["w", "N/A", "x", "y", "N/A"],
            "answer": "C", "answer_index": 2, "cot_content": "", "category": "law"}


@pytest.mark.parametrize("text,pred,how,correct", [
    ("so the answer is (B).", "B", "primary", True),
    ("so the answer is (C).", "C", "primary", False),  # C is now "y"
    ("Answer: B", "B", "fallback_answer", True),
    ("the answer is (E)", "E", "primary", False),  # a letter past the remaining options
])
def test_score_output_with_na_removed(text, pred, how, correct):
    row = mmlu_pro.score_output(item_with_na_before_answer(), text)
    assert row == {"pred": pred, "how": how, "guess": None, "answer": "B", "correct": correct}


def test_unparsed_answer_is_the_seeded_random_guess():
    import random

    item = item_with_na_before_answer()  # 3 options remain
    # documented seed: random.Random("12345:<question_id>").randint(0, n_options - 1)
    expected = "ABC"[random.Random("12345:77").randint(0, 2)]
    for text in ("no letter here", "", None):
        row = mmlu_pro.score_output(item, text)
        assert row["pred"] is None and row["how"] == "random_guess"
        assert row["guess"] == expected and row["correct"] == (expected == "B")
    # per item, not one letter for all (the official pre-2025 bug): over 4-option items the
    # guesses spread evenly and the guess of an item does not depend on other items
    rec = domain_records("law", 1)[0]
    guesses = [mmlu_pro.score_output({**rec, "question_id": q}, "nothing")["guess"] for q in range(4000)]
    freq = np.array([guesses.count(c) for c in "ABCD"]) / len(guesses)
    assert np.all(np.abs(freq - 0.25) < 0.03)
    assert mmlu_pro.score_output({**rec, "question_id": 123}, "x")["guess"] == guesses[123]
    rows = [{"how": "primary", "correct": True}, {"how": "random_guess", "correct": True},
            {"how": "random_guess", "correct": False}, {"how": "fallback_answer", "correct": False}]
    t = summary.accuracy_table(rows, "generate")
    assert (t["n_random_guess"], t["n_fallback"], t["n_correct"], t["value"]) == (2, 1, 2, 0.5)


# ----------------------------------------------------------------------------- prompts


@pytest.fixture(scope="module")
def tok():
    return make_tokenizer()


@pytest.fixture(scope="module")
def model(tiny):
    return tiny[0]


def items_with_edge_cases():
    items = domain_records("law", 5)
    items[1] = {**items[1], "options": items[1]["options"] + ["N/A", "N/A"]}
    items[2] = {**items[2], "options": [f"o{j}" for j in range(10)], "answer": "H",
                "answer_index": 7}
    items[3] = {**items[3], "options": ["x", "a longer option text", "yz", "q"]}
    items[4] = {**items[4], "options": ["N/A", "p", "N/A", "r", "s"], "answer": "D",
                "answer_index": 3}  # N/A before the answer: r is B once they are gone
    return items


# The official prompt for one demonstration and one item, written out from reading
# evaluate_from_local.py and cot_prompt_lib/initial_prompt.txt (which ends with three newlines).
OFFICIAL_PROMPT = (
    "The following are multiple choice questions (with answers) about math. Think step by step"
    ' and then finish your answer with "the answer is (X)" where X is the correct letter choice.'
    "\n\n\n\n"
    "Question:\nWhat is 1+1?\nOptions:\nA. 2\nB. 3\n"
    "Answer: Let's think step by step. 1+1=2. The answer is (A).\n\n"
    "Question:\nWhat is 2+2?\nOptions:\nA. 3\nB. 4\nC. 22\n"
    "Answer: Let's think step by step."
)
OFFICIAL_DEMO = {"question_id": 1, "question": "What is 1+1?", "options": ["2", "3", "N/A"],
                 "answer": "A", "answer_index": 0, "category": "math", "src": "t",
                 "cot_content": "A: Let's think step by step. 1+1=2. The answer is (A)."}
OFFICIAL_ITEM = {"question_id": 2, "question": "What is 2+2?",
                 "options": ["3", "N/A", "4", "22", "N/A"], "answer": "C", "answer_index": 2,
                 "category": "math", "src": "t", "cot_content": ""}


def test_prompt_is_the_official_text():
    assert mmlu_pro.mmlu_pro_prompt([OFFICIAL_DEMO], OFFICIAL_ITEM, "math") == OFFICIAL_PROMPT
    assert mmlu_pro.mmlu_pro_prompt([OFFICIAL_DEMO], OFFICIAL_ITEM) == OFFICIAL_PROMPT  # category
    with pytest.raises(ValueError, match="evaluate.k_shot: 0"):
        mmlu_pro.mmlu_pro_prompt([{**OFFICIAL_DEMO, "cot_content": ""}], OFFICIAL_ITEM, "math")


def test_na_options_removed_everywhere_answer_remapped():
    rec = drop_na_options(OFFICIAL_ITEM)
    assert rec["options"] == ["3", "4", "22"] and (rec["answer"], rec["answer_index"]) == ("B", 1)
    assert OFFICIAL_ITEM["options"] == ["3", "N/A", "4", "22", "N/A"]  # input untouched
    # the STS domain query lists no N/A either
    query = "Question:\nWhat is 2+2?\nOptions:\nA. 3\nB. 4\nC. 22"
    assert user_text(OFFICIAL_ITEM, "domain") == query
    # an N/A that is the correct answer stays, so the item remains answerable
    rec = drop_na_options({"options": ["a", "N/A", "b", "N/A"], "answer_index": 1, "answer": "B"})
    assert rec["options"] == ["a", "N/A", "b"] and rec["answer_index"] == 1
    # only the exact string "N/A" is padding
    assert drop_na_options({"options": ["n/a", "N/A ", "N/A"]})["options"] == ["n/a", "N/A "]
    with pytest.raises(ValueError, match="answer_index 4"):
        drop_na_options({"question_id": 5, "options": ["a", "b"], "answer_index": 4})


def test_prompt_ids_chat_is_one_user_turn(tok):
    seg = Segmenter.for_tokenizer(tok, True)
    prompt = mmlu_pro.mmlu_pro_prompt([], domain_records("law", 1)[0], "law")
    ids = scoring.prompt_ids(seg, prompt, True)
    expected = tok.apply_chat_template([{"role": "user", "content": prompt}], tokenize=False,
                                       add_generation_prompt=True)
    assert tok.decode(ids) == expected
    plain = scoring.prompt_ids(Segmenter.for_tokenizer(tok, False), prompt, False)
    assert tok.decode(plain) == "<s>" + prompt


# ------------------------------------------------------------------------- option log-likelihood


def direct_option_logprobs(model, tok, seg, demos, item):
    """Sum of log-probs of each option ("N/A" options left out) given the context, one full
    forward per option, no cache."""
    ctx = seg.head()
    for d in demos:
        ctx += seg.demo(d, "domain")
    ctx += seg.query(item, "domain")
    out = []
    with torch.no_grad():
        for opt in [o for o in item["options"] if o != "N/A"]:
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
    rows = scoring.eval_option_loglik(model, tok, items, demos, segmenter=seg, k_shot=k_shot,
                                      batch_size=3, reuse_cache=reuse_cache)
    assert [r["question_id"] for r in rows] == [i["question_id"] for i in items]
    n_correct = 0
    for item, row in zip(items, rows):
        direct = direct_option_logprobs(model, tok, seg, demos[:k_shot], item)
        kept = [o for o in item["options"] if o != "N/A"]
        assert len(row["logprob_sum"]) == len(direct) == len(kept)
        np.testing.assert_allclose(row["logprob_sum"], direct, atol=2e-4, rtol=1e-5)
        means = [s / n for s, n in zip(direct, row["n_option_tokens"])]
        assert row["logprob_mean"] == pytest.approx(means, abs=1e-4)
        pred = int(np.argmax(means))
        assert row["pred_index"] == pred
        answer = kept.index(item["options"][item["answer_index"]])
        assert row["answer_index"] == answer and row["correct"] == (pred == answer)
        n_correct += row["correct"]
    table = summary.accuracy_table(rows, "option_loglik")
    assert table["value"] == pytest.approx(n_correct / len(items))


# ----------------------------------------------------------------------------- NLL


class WithoutLogitsToKeep(torch.nn.Module):
    """A causal LM whose forward does not take ``logits_to_keep`` (as a wrapped model's may not)."""

    def __init__(self, model):
        super().__init__()
        self.inner = model
        self.config = model.config

    def forward(self, input_ids, attention_mask=None, use_cache=None, past_key_values=None):
        return self.inner(input_ids=input_ids, attention_mask=attention_mask, use_cache=use_cache,
                          past_key_values=past_key_values)


@pytest.mark.parametrize("chat", [True, False])
@pytest.mark.parametrize("keeps_logits", [True, False])
def test_nll_matches_direct(model, tok, chat, keeps_logits):
    """Each item's query runs once on the head's cache (its LM head on the last position only,
    where the forward takes logits_to_keep), its reference response on a copy of that cache."""
    seg = Segmenter.for_tokenizer(tok, chat)
    items = domain_records("law", 3)
    items.append({**domain_records("law", 1, offset=7)[0], "cot_content": ""})  # test-split item
    lm = model if keeps_logits else WithoutLogitsToKeep(model)
    # the test model's forward takes logits_to_keep (the path the query's forward uses), the
    # wrapper's not
    assert ("logits_to_keep" in inspect.signature(lm.forward).parameters) == keeps_logits
    rows = scoring.eval_nll(lm, tok, items, segmenter=seg, kind="domain", batch_size=3)
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
    rows = scoring.eval_nll(model, tok, sft, segmenter=seg, kind="sft", batch_size=2)
    assert [r["question_id"] for r in rows] == [r["id"] for r in sft]
    table = summary.accuracy_table(rows, "nll")
    assert table["value"] == pytest.approx(np.mean([r["nll"] for r in rows]))
    assert table["higher_is_better"] is False and table["n_items"] == 3


@pytest.mark.parametrize("k_shot", [0, 2])
def test_the_joint_pass_gives_what_each_metric_and_the_layer_means_give_alone(model, tok, k_shot):
    """The evaluation job's teacher-forced pass (NLL, 0-shot option log-likelihood and the layer
    means from one forward of each item's query) against direct computations: every option and
    reference scored in one uncached sequence, every block's output read with LayerTap; a
    k-shot option log-likelihood keeps its own prefix."""
    from stsflow.config.settings import EvalSettings

    seg = Segmenter.for_tokenizer(tok, True)
    items = domain_records("law", 4)
    items[2] = {**items[2], "options": [*items[2]["options"][:2], "N/A",
                                        *items[2]["options"][2:]]}
    demos = domain_records("law", 3, offset=10)
    settings = EvalSettings.with_defaults(metrics=("nll", "option_loglik"), k_shot=0,
                                          loglik_k_shot=k_shot, max_new_tokens=8,
                                          max_context=4096, chat_template=False, batch_size=3,
                                          n_boot=10)
    rows, means = scoring.teacher_forced(model, tok, items, demos, segmenter=seg,
                                         settings=settings, residuals=True)
    direct = scoring.eval_option_loglik(model, tok, items, demos, segmenter=seg, k_shot=k_shot,
                                        batch_size=3, reuse_cache=False)
    for got, want in zip(rows["option_loglik"], direct):
        assert got["pred_index"] == want["pred_index"]
        assert got["n_option_tokens"] == want["n_option_tokens"]
        np.testing.assert_allclose(got["logprob_sum"], want["logprob_sum"], rtol=1e-5, atol=1e-5)
    for item, row in zip(items, rows["nll"]):
        ctx = seg.head() + seg.query(item, "domain")
        resp = seg.response(item, "domain")
        with torch.no_grad():
            logits = model(input_ids=torch.tensor([ctx + resp])).logits[0]
        nll = F.cross_entropy(logits[len(ctx) - 1: -1], torch.tensor(resp))
        assert row["n_tokens"] == len(resp) and row["nll"] == pytest.approx(float(nll), abs=1e-5)
    want, n = direct_layer_sums(model, seg, items)
    assert means.n_tokens == n
    np.testing.assert_allclose(means.sums / n, want / n, rtol=1e-5, atol=1e-6)


def test_a_failing_pass_leaves_the_model_as_it_found_it(model, tok):
    """A pass that fails, in the shared prefix (a token id outside the vocabulary) or on an item
    that cannot be scored (no reference answer), leaves the model in training mode as it was,
    with the forward hooks it had (none: no test leaves one on the shared model, conftest's
    guard) and no other."""
    from stsflow.evaluate.forced import item_pass

    seg = Segmenter.for_tokenizer(tok, True)
    bad = {**domain_records("law", 1)[0], "cot_content": "", "answer_index": None}
    before = forward_hooks(model)
    assert before == set()
    model.train()
    try:
        with pytest.raises(IndexError):
            item_pass(model, tok, domain_records("law", 2), segmenter=seg,
                      prefix=[model.config.vocab_size + 5], options=True, residuals=True)
        assert model.training
        assert forward_hooks(model) == before
        with pytest.raises(ValueError, match="no reference answer"):
            item_pass(model, tok, [*domain_records("law", 2), bad], segmenter=seg,
                      prefix=seg.head(), reference="domain", residuals=True)
        assert model.training
        assert forward_hooks(model) == before
    finally:
        model.eval()


# ----------------------------------------------------------------------------- generation


@pytest.mark.parametrize("chat", [True, False])
def test_generate_batched_equals_unbatched(model, tok, chat):
    items = domain_records("law", 3, offset=3)
    items[0] = {**items[0], "question": "a much longer question so that left padding is needed?"}
    demos = domain_records("law", 1)
    kw = dict(subject="law", use_chat_template=chat, max_new_tokens=5)
    batched = scoring.eval_generate(model, tok, items, demos, batch_size=3, **kw)
    single = scoring.eval_generate(model, tok, items, demos, batch_size=1, **kw)
    # a token budget that fits two of the prompts (with their new tokens) but not three
    lens = sorted(len(scoring.prompt_ids(Segmenter.for_tokenizer(tok, chat), scoring.mmlu_pro_prompt(
        demos[:1], it, "law"), chat)) + 5 for it in items)
    budget = scoring.eval_generate(model, tok, items, demos, batch_size=3,
                                   batch_tokens=2 * lens[-1], **kw)
    assert [r["output"] for r in batched] == [r["output"] for r in single]
    assert [r["output"] for r in budget] == [r["output"] for r in single]
    assert [r["question_id"] for r in budget] == [i["question_id"] for i in items]
    for item, row in zip(items, batched):
        assert row["question_id"] == item["question_id"]
        pred, how = mmlu_pro.extract_answer(row["output"])
        assert row["pred"] == pred and row["how"] == (how if pred else "random_guess")
        assert row["correct"] == ((row["pred"] or row["guess"]) == item["answer"])
        assert 1 <= row["n_generated"] <= 5 and row["k_shot"] == 1
        assert row["finish"] in ("eos", "stop", "length")


def test_generate_drops_demos_to_fit_context(model, tok):
    items = domain_records("law", 1)
    demos = domain_records("law", 3, offset=4)
    full = len(scoring.prompt_ids(Segmenter.for_tokenizer(tok, False),
                                  mmlu_pro.mmlu_pro_prompt(demos, items[0], "law"), False))
    two = len(scoring.prompt_ids(Segmenter.for_tokenizer(tok, False),
                                 mmlu_pro.mmlu_pro_prompt(demos[:2], items[0], "law"), False))
    # official: keep k demonstrations while prompt tokens < max_model_length - max_new_tokens
    for limit, k in ((full + 3, 3), (full + 2, 2), (two + 3, 2), (two + 2, 1)):
        rows = scoring.eval_generate(model, tok, items, demos, subject="law", max_new_tokens=2,
                                     batch_size=1, max_context=limit)
        assert rows[0]["k_shot"] == k and rows[0]["demos_dropped"] == 3 - k
    with pytest.raises(ValueError, match="evaluate.max_new_tokens"):
        scoring.eval_generate(model, tok, items, demos, subject="law", max_new_tokens=2048)


def test_generate_end_to_end_raw_prompt_by_default(model, tok, tiny_model_dir, tmp_path):
    """The configured evaluation through the evaluate job: by default the model sees BOS + the
    official prompt text, one token per character with this tokenizer; with
    evaluate.chat_template it sees the ChatML turn instead."""
    import json

    import pyarrow.parquet as pq

    from stsflow.config.settings import EvalSettings, ModelSettings
    from stsflow.data import corpora
    from stsflow.jobs import validate
    from stsflow.models.load import prepare_model

    prepared = tmp_path / "model"
    source = {"local": {"path": str(tiny_model_dir)}}
    prepare_model(source, prepared)
    item = {**OFFICIAL_ITEM, "question_id": 2}
    corpora.write_records([item], tmp_path / "test.parquet")
    corpora.write_records([OFFICIAL_DEMO], tmp_path / "demos.parquet")
    mspec = ModelSettings.with_defaults(source=source, device="cpu")
    # two metrics: the job runs each registered metric in turn and keeps every item's row
    base = {"metrics": ["generate", "nll"], "max_new_tokens": 4, "batch_size": 2}
    details = {}
    for chat in (False, True):
        out = tmp_path / f"eval-{chat}.parquet"
        validate.evaluate(prepared, mspec, tmp_path / "test.parquet",
                          tmp_path / "demos.parquet",
                          EvalSettings.with_defaults(**base, chat_template=chat),
                          {"model": "tiny"}, out, subject="math")
        rows = pq.read_table(out)
        assert rows.column("metric").to_pylist() == ["generate", "nll"]
        details[chat] = json.loads(rows.column("detail")[0].as_py())
    raw = details[False]
    assert raw["n_prompt_tokens"] == 1 + len(OFFICIAL_PROMPT) and raw["k_shot"] == 1
    chatml = tok.apply_chat_template([{"role": "user", "content": OFFICIAL_PROMPT}],
                                     tokenize=False, add_generation_prompt=True)
    assert details[True]["n_prompt_tokens"] == len(tok(chatml, add_special_tokens=False).input_ids)
    # the same rows from the library call with its defaults (no chat template)
    rows = scoring.eval_generate(model, tok, [item], [OFFICIAL_DEMO], subject="math", max_new_tokens=4)
    assert rows[0]["output"] == raw["output"]
    assert rows[0]["n_prompt_tokens"] == 1 + len(OFFICIAL_PROMPT)
    assert raw["answer"] == "B" and raw["correct"] == ((raw["pred"] or raw["guess"]) == "B")


def test_finish_cuts_at_eos_and_stop_string(tok):
    ids = lambda s: tok(s, add_special_tokens=False)["input_ids"]  # noqa: E731
    eos, pad = [tok.eos_token_id], tok.pad_token_id

    def cut(new, limit):
        g = engines.cut_continuation(tok, new, eos, pad, ["Question:"], limit)
        return g.text, g.n_generated, g.finish

    assert cut(ids("the answer is (B)") + eos + [pad] * 3, 30) == ("the answer is (B)", 18, "eos")
    assert cut(ids("so B.\n\nQuestion: next") + [pad] * 2, 30) == ("so B.\n\n", 21, "stop")
    assert cut(ids("abc"), 3) == ("abc", 3, "length")


# ----------------------------------------------------------------------------- summaries


def test_accuracy_table_counts():
    rows = [{"question_id": 1, "correct": True, "how": "primary", "demos_dropped": 0},
            {"question_id": 2, "correct": False, "how": "fallback_answer", "demos_dropped": 2},
            {"question_id": 3, "correct": True, "how": "fallback_last_letter", "demos_dropped": 1},
            {"question_id": 4, "correct": False, "how": "random_guess", "demos_dropped": 0}]
    t = summary.accuracy_table(rows, "generate")
    assert t["value"] == 0.5 and t["n_items"] == 4 and t["n_correct"] == 2
    assert t["n_fallback"] == 2 and t["n_random_guess"] == 1 and t["higher_is_better"]
    assert t["n_demos_dropped"] == 2
    with pytest.raises(ValueError):
        summary.accuracy_table(rows, "f1")


def test_bootstrap_ci_contains_delta_and_is_seeded():
    rng = np.random.default_rng(1)
    before = (rng.random(300) < 0.5).astype(float)
    after = np.where(rng.random(300) < 0.2, 1.0 - before, before)
    delta = after.mean() - before.mean()
    lo, hi = observed.bootstrap_delta_ci(before, after, n_boot=2000, seed=0)
    assert lo <= delta <= hi and lo < hi
    assert observed.bootstrap_delta_ci(before, after, n_boot=2000, seed=0) == (lo, hi)
    assert observed.bootstrap_delta_ci(before, after, n_boot=2000, seed=1) != (lo, hi)
    same = observed.bootstrap_delta_ci(before, before, n_boot=200, seed=0)
    assert same == (0.0, 0.0)
    with pytest.raises(ValueError):
        observed.bootstrap_delta_ci([1.0, 0.0], [1.0])


def test_paired_values_align_by_question_id():
    before = [{"question_id": q, "correct": c} for q, c in [(1, True), (2, False), (3, True)]]
    after = [{"question_id": q, "correct": c} for q, c in [(3, False), (1, True), (2, True)]]
    b, a = summary.paired_values(before, after, "accuracy")
    assert b.tolist() == [1.0, 0.0, 1.0] and a.tolist() == [1.0, 1.0, 0.0]
    with pytest.raises(ValueError):
        summary.paired_values(before, after[:2], "accuracy")


def test_the_registered_metrics_are_listed_with_their_kind_and_direction():
    """`stsflow registry` lists every registered metric (what evaluate.metrics may name), each
    with its kind and direction; registering a name twice is refused."""
    from stsflow.evaluate.registry import METRICS, metrics, register_metric

    metrics()  # the built-in ones register when first asked for

    from stsflow.cli import registry_text

    listed = registry_text().split("metrics (evaluate.metrics):")[1].split("\n\n")[0]
    assert [line.split()[0] for line in listed.splitlines() if line.strip()] == list(METRICS)
    assert {m.name: (m.kind, m.higher_is_better) for m in METRICS.values()} == {
        "nll": ("nll", False), "option_loglik": ("accuracy", True),
        "generate": ("accuracy", True)}
    with pytest.raises(ValueError, match="twice"):
        register_metric("nll", kind="nll", higher_is_better=False,
                        cost=lambda ev: None)(lambda *a, **k: [])


def test_nll_with_max_length_scores_the_kept_response_tokens(model, tok):
    """max_length cuts the context + response: what is left of each response is scored (a
    direct computation on the cut sequence); a response cut away entirely gives NaN, 0 tokens."""
    seg = Segmenter.for_tokenizer(tok, True)
    items = domain_records("law", 3)
    ctx_lens = [len(seg.head() + seg.query(it, "domain")) for it in items]
    cut = min(ctx_lens) + 4
    rows = scoring.eval_nll(model, tok, items, segmenter=seg, kind="domain", batch_size=3,
                            max_length=cut)
    for item, row, n_ctx in zip(items, rows, ctx_lens):
        seq = (seg.head() + seg.query(item, "domain") + seg.response(item, "domain"))[:cut]
        if n_ctx >= cut:
            assert row["n_tokens"] == 0 and np.isnan(row["nll"])
            continue
        with torch.no_grad():
            logits = model(input_ids=torch.tensor([seq])).logits[0]
        nll = F.cross_entropy(logits[n_ctx - 1: -1], torch.tensor(seq[n_ctx:]))
        assert row["n_tokens"] == cut - n_ctx
        assert row["nll"] == pytest.approx(float(nll), abs=1e-5)
    none_left = scoring.eval_nll(model, tok, items, segmenter=seg, kind="domain", batch_size=3,
                                 max_length=min(ctx_lens))
    assert all(r["n_tokens"] == 0 and np.isnan(r["nll"]) for r in none_left)


def test_a_continuation_token_budget_changes_batches_not_results(model, tok):
    """evaluate.batch_tokens: option and reference continuations in batches within the budget
    give the values of the unbounded batches (float32 rounding apart)."""
    seg = Segmenter.for_tokenizer(tok, True)
    items = items_with_edge_cases()
    free = scoring.eval_option_loglik(model, tok, items, [], segmenter=seg, batch_size=10)
    tight = scoring.eval_option_loglik(model, tok, items, [], segmenter=seg, batch_size=10,
                                       batch_tokens=6)
    assert [r["question_id"] for r in tight] == [r["question_id"] for r in free]
    for a, b in zip(free, tight):
        assert a["pred_index"] == b["pred_index"]
        np.testing.assert_allclose(a["logprob_sum"], b["logprob_sum"], rtol=1e-5, atol=1e-5)
    nll_free = scoring.eval_nll(model, tok, items, segmenter=seg, kind="domain", batch_size=3)
    nll_tight = scoring.eval_nll(model, tok, items, segmenter=seg, kind="domain", batch_size=3,
                                 batch_tokens=1)
    np.testing.assert_allclose([r["nll"] for r in nll_tight], [r["nll"] for r in nll_free],
                               rtol=1e-5)
