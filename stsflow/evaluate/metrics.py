"""Evaluation of a model on a domain (SPEC §5.2): official MMLU-Pro CoT generation, and two
cheaper, deterministic alternatives (option log-likelihood accuracy, NLL of the reference answer).

``generate`` follows TIGER-AI-Lab MMLU-Pro ``evaluate_from_local.py`` (with its
``cot_prompt_lib/initial_prompt.txt``):

* **Prompt.** ``MMLU_PRO_HEADER`` with the subject filled in, then four newlines (the prompt file
  ends with three, the script appends one), then per demonstration ``"Question:\\n"`` + question +
  ``"\\nOptions:\\n"`` + one ``"X. <option>\\n"`` line per option + its ``cot_content`` (opening "A:
  Let's think step by step." turned into "Answer: Let's think step by step.") + ``"\\n\\n"``, then
  the item laid out the same way followed by ``"Answer: Let's think step by step."``. Texts are
  used as stored (not stripped). The first ``k_shot`` demonstrations of the domain's demos split
  are used; a demonstration without ``cot_content`` is refused (the official prompt would show an
  empty answer).
* **Options.** Every option equal to ``"N/A"`` is removed (``prompts.drop_na_options``), with
  ``answer_index``/``answer`` remapped; the official script does not remap, which only matters if
  an "N/A" precedes the answer.
* **Raw prompt.** By default (``evaluate.chat_template: false``) the prompt is plain text after
  the tokenizer's BOS, as the script sends it to vLLM. With ``evaluate.chat_template: true`` (and
  the model's ``chat_template`` on) the whole prompt is one user turn followed by the generation
  prompt, nothing pre-filled in the assistant turn, rendered with the layout of
  ``stsflow.text.segments`` (equal to ``apply_chat_template``). The model's ``chat_template`` setting
  alone still governs STS extraction, ``option_loglik`` and ``nll``.
* **Context.** Demonstrations are dropped from the end until prompt tokens (BOS included) +
  ``max_new_tokens`` < ``evaluate.max_context`` (default 4096, the script's
  ``max_model_length``; capped by the model's ``max_position_embeddings``); the row's ``k_shot``
  says how many were used.
* **Decoding.** Greedy; output cut at the stop string ``"Question:"`` (excluded) or EOS (the
  tokenizer's and the generation config's EOS ids), at most ``max_new_tokens``.
* **Answer extraction** is the official cascade: ``re.search`` (first match) of ``answer is
  \\(?([A-J])\\)?``; else ``.*[aA]nswer:\\s*([A-J])`` (no DOTALL: the last "Answer: X" of the first
  line that has one; ``\\s*`` may cross a newline); else the last standalone capital A-J
  (``\\b[A-J]\\b(?!.*\\b[A-J]\\b)``, DOTALL). All case-sensitive: "the answer is (c)" and
  "ANSWER: C" fall through to the last-letter rule.
* **Unparsed answers** are scored as a random guess, as the official script does: an index drawn
  uniformly with ``randint(0, n_options - 1)`` (options after "N/A" removal) from Python's
  ``random`` seeded with 12345, compared with ``answer_index``. The official script seeds once per
  run and draws in item order (before February 2025 it re-seeded before every draw, so every
  unparsed 10-option item got the same letter, a bug its maintainers fixed); here each item draws
  from ``random.Random(f"12345:{question_id}")``, so the guess does not depend on which other
  items failed to parse, and an item unparsed both before and after fine-tuning gets the same
  guess (no guessing noise in Δ). Rows say ``how="random_guess"`` with the letter in ``guess``
  (``pred`` stays ``None``); ``accuracy_table`` counts them in ``n_random_guess``.

Where ``generate`` still differs from the official run: Hugging Face ``generate`` in left-padded
batches (sorted by length) instead of vLLM, so greedy outputs can differ in rare near-ties
(bf16 kernels, padding); EOS ids are the tokenizer's and the generation config's (vLLM's are
similar but not guaranteed equal); the header's subject is ``domains.<name>.subject`` (default the
domain name with spaces) rather than the record's ``category``; the script's accuracy pools
categories, ours is per domain.

Other metrics:

* **Option log-likelihood.** Context = head + k demonstrations (query + response segments) + the
  item's query segment (which lists the lettered options); continuation = the option text,
  tokenized on its own (ids concatenated, as everywhere in STS). Scores: sum of the token log-probs
  and their mean (length-normalised); prediction = argmax of the mean (first on ties); an option
  with no token gets mean ``-inf``. The head + demonstrations prefix runs once and its KV cache is
  shared by all items; each item's query runs once on a copy, whose cache is repeated over options.
* **NLL.** Mean next-token NLL of the reference response given head + query. The reference is
  ``assistant_text`` (a domain record's CoT, an SFT record's solution). MMLU-Pro *test* records
  have no ``cot_content``; for them the reference is ``"The answer is (X). <option text>"``
  (``reference="answer"`` in the row), since the bare CoT trigger would carry no information.
* **Summary.** ``accuracy_table`` reports the raw value: accuracy (higher is better) or the mean
  over items of the per-item mean NLL (lower is better); deltas are always ``after - before``.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from stsflow.evaluate.forced import Forced, item_pass
from stsflow.evaluate.mmlu_pro import (
    OFFICIAL_MAX_CONTEXT,
    STOP_STRINGS,
    mmlu_pro_prompt,
    score_output,
)
from stsflow.evaluate.registry import register_metric
from stsflow.models.batching import pad_batch, pad_id_of, token_batches
from stsflow.text.prompts import (
    LETTERS,
    drop_na_options,
)


def _ids(tokenizer, text: str) -> list[int]:
    return list(tokenizer(text, add_special_tokens=False)["input_ids"]) if text else []


def prompt_ids(segmenter, prompt: str, use_chat_template: bool) -> list[int]:
    """Token ids of a generation prompt: one user turn + generation prompt, or head + plain text."""
    lay = segmenter.layout
    text = lay.user_open + prompt + lay.user_close_and_gen if use_chat_template else prompt
    return segmenter.head() + _ids(segmenter.tokenizer, text)


def _device(model):
    return next(model.parameters()).device


def _eos_ids(model, tokenizer) -> list[int]:
    ids = []
    gen_eos = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    for val in (gen_eos, getattr(tokenizer, "eos_token_id", None)):
        if isinstance(val, int):
            ids.append(val)
        elif isinstance(val, (list, tuple)):
            ids.extend(int(v) for v in val)
    return sorted(set(ids))


# ----------------------------------------------------------------------------- generation


@torch.no_grad()
def eval_generate(model, tokenizer, items: list[dict], demos: list[dict], *, subject: str | None,
                  use_chat_template: bool = False, max_new_tokens: int = 2048, batch_size: int = 8,
                  batch_tokens: int | None = None,
                  k_shot: int | None = None, stop_strings=STOP_STRINGS,
                  max_context: int = OFFICIAL_MAX_CONTEXT) -> list[dict]:
    """Official MMLU-Pro CoT evaluation: greedy generation, answer extraction, random guess for an
    unparsed answer. One row per item, in the order of ``items``."""
    from transformers import GenerationConfig

    from stsflow.text.segments import Segmenter

    seg = Segmenter.for_tokenizer(tokenizer, use_chat_template)
    demos = list(demos[:k_shot] if k_shot is not None else demos)
    model_max = getattr(getattr(model, "config", None), "max_position_embeddings", None)
    limit = min(max_context, model_max) if model_max else max_context
    if max_new_tokens >= limit:
        raise ValueError(f"evaluate.max_new_tokens ({max_new_tokens}) leaves no room for a prompt "
                         f"within {limit} tokens (evaluate.max_context, capped by the model's "
                         "max_position_embeddings); lower max_new_tokens or raise max_context")
    prompts = []
    for item in items:
        k = len(demos)
        ids = prompt_ids(seg, mmlu_pro_prompt(demos[:k], item, subject), use_chat_template)
        while k > 0 and len(ids) + max_new_tokens >= limit:  # official: keep while strictly below
            k -= 1
            ids = prompt_ids(seg, mmlu_pro_prompt(demos[:k], item, subject), use_chat_template)
        prompts.append((ids, k))

    pad_id = pad_id_of(tokenizer)
    eos = _eos_ids(model, tokenizer)
    gen_cfg = GenerationConfig(do_sample=False, max_new_tokens=max_new_tokens, num_beams=1,
                               eos_token_id=eos or None, pad_token_id=pad_id,
                               stop_strings=list(stop_strings) or None)
    device = _device(model)
    was_training = model.training
    model.eval()
    rows: list[dict | None] = [None] * len(items)
    # longest prompts first; with batch_tokens, rows x (longest prompt + max_new_tokens), the
    # size the batch's cache grows to, within that budget
    for idx in token_batches([len(p[0]) + max_new_tokens for p in prompts], batch_size,
                             batch_tokens):
        input_ids, attention = pad_batch([prompts[i][0] for i in idx], pad_id, left=True)
        width = input_ids.shape[1]
        out = model.generate(input_ids=input_ids.to(device), attention_mask=attention.to(device),
                             generation_config=gen_cfg, tokenizer=tokenizer)
        for r, i in enumerate(idx):
            new = out[r, width:].tolist()
            text, n_gen, finish = _finish(tokenizer, new, eos, pad_id, stop_strings, max_new_tokens)
            rows[i] = {"question_id": items[i].get("question_id"), **score_output(items[i], text),
                       "n_generated": n_gen, "finish": finish, "k_shot": prompts[i][1],
                       "n_prompt_tokens": len(prompts[i][0]), "output": text}
    if was_training:
        model.train()
    return rows


def _finish(tokenizer, new: list[int], eos: list[int], pad_id: int, stop_strings,
            max_new_tokens: int) -> tuple[str, int, str]:
    """Generated text (up to EOS / stop string, both excluded), tokens generated, why it ended."""
    eos_set = set(eos)
    cut = next((j for j, t in enumerate(new) if t in eos_set), None)
    if cut is not None:
        toks, n_gen, finish = new[:cut], cut + 1, "eos"
    else:
        n_gen = len(new)
        while n_gen > 0 and new[n_gen - 1] == pad_id and n_gen < max_new_tokens:
            n_gen -= 1
        toks, finish = new[:n_gen], "length"
    text = tokenizer.decode(toks, skip_special_tokens=True)
    hits = [text.find(s) for s in stop_strings if s and s in text]
    if hits:
        text, finish = text[:min(hits)], "stop"
    return text, n_gen, finish


# ------------------------------------------------------------------------- option log-likelihood


def _score_row(item: dict, per_token: list[list[float]], n_tokens: list[int]) -> dict:
    sums = [float(sum(v)) for v in per_token]
    means = [s / n if n else float("-inf") for s, n in zip(sums, n_tokens)]
    pred = int(np.argmax(means)) if means else None
    ans = item.get("answer_index")
    return {"question_id": item.get("question_id"), "pred_index": pred,
            "pred": LETTERS[pred] if pred is not None else None, "answer_index": ans,
            "correct": pred is not None and ans is not None and pred == int(ans),
            "logprob_sum": sums, "logprob_mean": means, "n_option_tokens": list(n_tokens)}


@torch.no_grad()
def eval_option_loglik(model, tokenizer, items: list[dict], demos: list[dict], *, segmenter,
                       k_shot: int = 0, batch_size: int = 10, reuse_cache: bool = True,
                       batch_tokens: int | None = None
                       ) -> list[dict]:
    """Option log-likelihood accuracy. One row per item: question_id, pred_index, pred,
    answer_index, correct, and per option logprob_sum, logprob_mean, n_option_tokens."""
    prefix = segmenter.head()
    for d in demos[:k_shot]:
        prefix += segmenter.demo(d, "domain")  # user_text drops "N/A" options
    if reuse_cache:
        got = item_pass(model, tokenizer, items, segmenter=segmenter, prefix=prefix, options=True,
                        batch_size=batch_size, batch_tokens=batch_tokens)
        return option_rows(got)
    # the direct computation (tests, and a check of the cache path): context and option in one
    # sequence, no cache
    device = _device(model)
    was_training = model.training
    model.eval()
    rows = []
    for item in items:
        rec = drop_na_options(item)
        ctx = prefix + segmenter.query(rec, "domain")
        opt_ids = [_ids(tokenizer, str(o).strip()) for o in rec["options"]]
        per_token: list[list[float]] = [[] for _ in opt_ids]
        nonempty = [i for i, ids in enumerate(opt_ids) if ids]
        for c in range(0, len(nonempty), batch_size):
            chunk = nonempty[c:c + batch_size]
            ids, att = pad_batch([ctx + opt_ids[i] for i in chunk])
            logits = model(input_ids=ids.to(device), attention_mask=att.to(device),
                           use_cache=False).logits
            logp = F.log_softmax(logits.float(), dim=-1)
            for r, i in enumerate(chunk):
                per_token[i] = [float(logp[r, len(ctx) + j - 1, t])
                                for j, t in enumerate(opt_ids[i])]
        rows.append(_score_row(rec, per_token, [len(o) for o in opt_ids]))
    if was_training:
        model.train()
    return rows


def option_rows(got: Forced) -> list[dict]:
    """``option_loglik`` rows from a teacher-forced pass that read the options."""
    # an option's token count is the length of its log-probs (an empty option has none)
    return [_score_row(rec, per_token, [len(v) for v in per_token])
            for rec, per_token in zip(got.records, got.options)]


# ----------------------------------------------------------------------------- NLL


def reference_text(record: dict, kind: str) -> tuple[str, str]:
    """``(text, which)``: the reference response used by ``eval_nll``; which in {"cot", "answer",
    "solution"}."""
    from stsflow.text.prompts import assistant_text

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


def eval_nll(model, tokenizer, items: list[dict], *, segmenter, kind: str = "domain",
             batch_size: int = 8, max_length: int | None = None,
             batch_tokens: int | None = None) -> list[dict]:
    """Mean NLL per token of the reference response given head + query. One row per item:
    question_id, nll, n_tokens, reference. ``max_length`` cuts head + query + response; what is
    left of the response is scored (none left: NaN, 0 tokens)."""
    got = item_pass(model, tokenizer, items, segmenter=segmenter, prefix=segmenter.head(),
                    reference=kind, max_length=max_length, batch_size=batch_size,
                    batch_tokens=batch_tokens)
    return nll_rows(items, got)


def nll_rows(items: list[dict], got: Forced) -> list[dict]:
    """``nll`` rows from a teacher-forced pass that read the reference responses."""
    rows = []
    for rec, (vals, which) in zip(items, got.reference):
        n = len(vals)
        rows.append({"question_id": rec.get("question_id", rec.get("id")),
                     "nll": float(-np.sum(vals) / n) if n else float("nan"), "n_tokens": n,
                     "reference": which})
    return rows


def teacher_forced(model, tokenizer, items: list[dict], demos: list[dict], *, segmenter,
                   settings, residual_max_length: int | None = None,
                   residuals: bool = False) -> tuple[dict, Forced | None]:
    """The evaluation job's teacher-forced metrics in as few passes as their prefixes allow:
    ``nll``, 0-shot ``option_loglik`` and the layer means share the chat head, so each item runs
    through the model once for all three (``forced.item_pass``); a k-shot ``option_loglik``
    has its own prefix, its own pass. Returns ({metric: rows}, the pass holding the layer
    means, or None)."""
    metrics = settings.metrics
    k = settings.loglik_k_shot if "option_loglik" in metrics else 0
    joint_options = "option_loglik" in metrics and k == 0
    rows: dict = {}
    means = None
    if "nll" in metrics or joint_options or residuals:
        got = item_pass(model, tokenizer, items, segmenter=segmenter, prefix=segmenter.head(),
                        options=joint_options, reference="domain" if "nll" in metrics else None,
                        residuals=residuals, residual_max_length=residual_max_length,
                        batch_size=settings.batch_size, batch_tokens=settings.batch_tokens)
        if "nll" in metrics:
            rows["nll"] = nll_rows(items, got)
        if joint_options:
            rows["option_loglik"] = option_rows(got)
        means = got if residuals else None
    if "option_loglik" in metrics and not joint_options:
        rows["option_loglik"] = _run_option_loglik(model, tokenizer, items, demos,
                                                   segmenter=segmenter, settings=settings,
                                                   subject=None, chat_template=None)
    return rows, means


@register_metric("nll", kind="nll", higher_is_better=False)
def _run_nll(model, tokenizer, items, demos, *, segmenter, settings, subject, chat_template):
    return eval_nll(model, tokenizer, items, segmenter=segmenter,
                    batch_size=settings.batch_size, batch_tokens=settings.batch_tokens)


@register_metric("option_loglik", kind="accuracy", higher_is_better=True)
def _run_option_loglik(model, tokenizer, items, demos, *, segmenter, settings, subject,
                       chat_template):
    k = settings.loglik_k_shot
    return eval_option_loglik(model, tokenizer, items, demos[:k], segmenter=segmenter, k_shot=k,
                              batch_size=settings.batch_size,
                              batch_tokens=settings.batch_tokens)


@register_metric("generate", kind="accuracy", higher_is_better=True)
def _run_generate(model, tokenizer, items, demos, *, segmenter, settings, subject,
                  chat_template):
    # the raw official prompt unless evaluate.chat_template asks for the model's template
    k = settings.k_shot
    return eval_generate(model, tokenizer, items, demos[:k], subject=subject,
                         use_chat_template=settings.chat_template and chat_template,
                         max_new_tokens=settings.max_new_tokens,
                         batch_size=settings.batch_size, batch_tokens=settings.batch_tokens,
                         k_shot=k,
                         max_context=settings.max_context)
