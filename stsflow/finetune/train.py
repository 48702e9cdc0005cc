"""Supervised fine-tuning of a causal LM on SFT records: the training loop
(docs/method.md#fine-tuning).

The paper's recipe: full fine-tuning, AdamW β=(0.9, 0.95), weight decay 0.01, cosine schedule with
10 % linear warm-up, gradient clipping at 1.0, effective batch 256, fp32. LoRA is an option.

Choices made here (the paper is silent):

* **Examples.** ``input = head + query + response`` built from the token segments STS uses
  (``stsflow.text.segments``), so the model is tuned on exactly the token sequences whose features were
  analysed. Loss on response tokens only (labels -100 on head and query). With a chat template the
  response ends with the template's end-of-turn text; without one it ends with the plain layout's
  ``"\\n\\n"``; no extra EOS token is appended. Sequences longer than ``max_length`` are cut on
  the right; an example left without a response token is dropped (``n_dropped``).
* **Batches.** Each epoch visits the examples in a fresh permutation drawn from
  ``numpy.random.default_rng([seed, epoch])``. An optimizer step takes ``batch_size`` examples
  (the last step of an epoch takes the remainder; nothing is dropped); they are sorted by length
  and cut into micro-batches of at most ``micro_batch_size`` examples of similar lengths, each
  padded to its longest at most by a third of its tokens (``batching.length_chunks``; right
  padding, label -100 on padding; on a set of even lengths it hardly changes anything:
  docs/performance.md). The loss of a step is the mean over all response tokens of
  the step: each micro-batch contributes ``sum(CE) / n_response_tokens(step)``, so the gradient
  does not depend on the micro-batch split.
* **Optimizer.** torch AdamW on trainable parameters; weight decay only on parameters with >= 2
  dimensions (no decay on biases and norm gains, the Hugging Face Trainer convention), eps 1e-8.
  ``transformers.get_cosine_schedule_with_warmup`` with ``ceil(warmup_ratio * total_steps)``
  warm-up steps (as the HF Trainer counts them; the first step runs at lr 0 when warm-up > 0);
  ``total_steps = epochs * ceil(n / batch_size)``, capped by ``max_steps``.
* **Determinism.** ``torch.manual_seed(seed)`` before anything random (LoRA initialisation,
  dropout); ``torch.use_deterministic_algorithms(True, warn_only=True)`` for the duration of
  training (previous setting restored; ``CUBLAS_WORKSPACE_CONFIG`` defaulted to ``:4096:8``); fp32
  (a model in another dtype is converted in place). Optional non-reentrant activation
  checkpointing (``gradient_checkpointing``) gives the same numbers with less memory.
* **LoRA.** ``peft.get_peft_model`` with the configured rank/alpha/dropout/targets; after training
  the PEFT model is returned as it is, so the checkpoint keeps only the adapter
  (``checkpoint.plain`` merges it into the base where a plain model is needed).
"""

from __future__ import annotations

import contextlib
import math
import os
import time

import numpy as np
import torch
import torch.nn.functional as F

from stsflow.config.settings import FinetuneSettings
from stsflow.finetune import distributed, state
from stsflow.finetune.selective import is_selective
from stsflow.models.batching import length_chunks, pad_batch, pad_id_of
from stsflow.progress import Progress
from stsflow.resume import Interrupted, Resume, StopSignal, digest, rng_state, set_rng_state
from stsflow.text.segments import Segmenter

IGNORE = -100


# ----------------------------------------------------------------------------- examples


def _record_kind(record: dict, kind: str) -> str:
    if kind != "auto":
        return kind
    return "domain" if "options" in record and "solution" not in record else "sft"


def build_examples(records: list[dict], segmenter: Segmenter, max_length: int | None = None,
                   kind: str = "sft") -> list[tuple[list[int], list[int]]]:
    """``(input_ids, labels)`` per record: input = head + query + response; labels = -100 on head
    and query, the token ids on the response. Truncated to ``max_length`` tokens; records left
    without a response token are dropped. ``kind``: "sft", "domain", or "auto" (per record:
    "domain" when it has ``options`` and no ``solution``)."""
    head = segmenter.head()
    out = []
    for rec in records:
        k = _record_kind(rec, kind)
        prompt = head + segmenter.query(rec, k)
        resp = segmenter.response(rec, k)
        ids = prompt + resp
        labels = [IGNORE] * len(prompt) + list(resp)
        if max_length is not None:
            ids, labels = ids[:max_length], labels[:max_length]
        if any(lab != IGNORE for lab in labels[1:]):  # position 0 is never predicted
            out.append((ids, labels))
    return out


def count_answer_cut(records: list[dict], segmenter: Segmenter, max_length: int | None,
                     kind: str = "sft") -> int:
    """How many records lose part of their response to the ``max_length`` cut (the model is then
    tuned on truncated answers; reported beside the results)."""
    if max_length is None:
        return 0
    n_head = len(segmenter.head())
    return sum(n_head + len(segmenter.query(r, _record_kind(r, kind)))
               + len(segmenter.response(r, _record_kind(r, kind))) > max_length for r in records)


def collate(examples: list[tuple[list[int], list[int]]], pad_id: int, device=None):
    """Right-padded ``input_ids, attention_mask, labels`` tensors (labels -100 on padding)."""
    input_ids, attention = pad_batch([ids for ids, _ in examples], pad_id)
    labels, _ = pad_batch([lab for _, lab in examples], IGNORE)
    if device is not None:
        input_ids, attention, labels = input_ids.to(device), attention.to(device), labels.to(device)
    return input_ids, attention, labels


def response_loss_sum(model, input_ids, attention_mask, labels) -> tuple[torch.Tensor, int]:
    """Sum of next-token cross-entropy over labelled positions, and their number."""
    logits = model(input_ids=input_ids, attention_mask=attention_mask, use_cache=False).logits
    logits = logits[:, :-1].float()
    target = labels[:, 1:]
    loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), target.reshape(-1),
                           ignore_index=IGNORE, reduction="sum")
    return loss, int((target != IGNORE).sum())


# ----------------------------------------------------------------------------- training


@contextlib.contextmanager
def _deterministic(enabled: bool):
    if not enabled:
        yield
        return
    prev = torch.are_deterministic_algorithms_enabled()
    prev_warn = torch.is_deterministic_algorithms_warn_only_enabled()
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(True, warn_only=True)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(prev, warn_only=prev_warn)


def _param_groups(model, weight_decay: float):
    decay, no_decay = [], []
    for p in model.parameters():
        if p.requires_grad:
            (decay if p.ndim >= 2 else no_decay).append(p)
    groups = [{"params": decay, "weight_decay": weight_decay}]
    if no_decay:
        groups.append({"params": no_decay, "weight_decay": 0.0})
    return groups


def total_steps(n_examples: int, cfg: FinetuneSettings) -> int:
    steps = cfg.epochs * math.ceil(n_examples / cfg.batch_size)
    return min(steps, cfg.max_steps) if cfg.max_steps is not None else steps


def _checkpointing(model, enable: bool) -> None:
    """Activation (gradient) checkpointing on the underlying transformers model, non-reentrant."""
    if enable:
        if hasattr(model, "activation_checkpointing_enable"):  # transformers >= 5.x
            model.activation_checkpointing_enable(
                activation_checkpointing_kwargs={"use_reentrant": False})
        else:
            model.gradient_checkpointing_enable(
                gradient_checkpointing_kwargs={"use_reentrant": False})
    elif hasattr(model, "activation_checkpointing_disable"):
        model.activation_checkpointing_disable()
    else:
        model.gradient_checkpointing_disable()


def _steps(n_examples: int, cfg: FinetuneSettings, n_total: int) -> list[tuple[int, int]]:
    """(epoch, first position in its permutation) of every optimizer step, in order: the step
    number is the data order's position, all a resumed run needs to go on where it stopped."""
    per_epoch = range(0, n_examples, cfg.batch_size)
    return [(epoch, start) for epoch in range(cfg.epochs) for start in per_epoch][:n_total]


def finetune(model, tokenizer, records: list[dict], cfg: FinetuneSettings, *,
             use_chat_template: bool, log=print, kind: str = "sft",
             context: dict | None = None, resume: Resume | None = None) -> dict:
    """Fine-tune ``model`` in place on ``records``; return the training history and the trained
    module under ``"model"`` (for LoRA: the PEFT model wrapping ``model``, whose checkpoint is the
    adapter; ``model`` itself then carries the adapter layers, its own weights frozen; for
    sae_select: ``model`` with its maps attached). ``context``: what the method needs beyond
    the recipe (sae_select: ``sites``, stsflow.finetune.selective). ``resume``: where the run
    checkpoints (stsflow.resume): it starts from its last complete checkpoint when one of this
    run is there, checkpoints as the recipe says, and on SIGTERM stops at the next micro-batch,
    checkpoints the state of the step it was in (unchanged until the optimizer steps) and raises
    ``resume.Interrupted``."""
    segmenter = Segmenter.for_tokenizer(tokenizer, use_chat_template)
    examples = build_examples(records, segmenter, cfg.max_length, kind=kind)
    n_dropped = len(records) - len(examples)
    n_cut = count_answer_cut(records, segmenter, cfg.max_length, kind)
    if n_cut:
        log(f"finetune: {n_cut} of {len(records)} answer(s) cut by max_length={cfg.max_length}")
    if not examples:
        raise ValueError("no training example keeps a response token (check max_length)")
    if n_dropped:
        log(f"finetune: dropped {n_dropped} record(s) with no response token within "
            f"max_length={cfg.max_length}")
    pad_id = pad_id_of(tokenizer)
    n_total = total_steps(len(examples), cfg)
    warmup = math.ceil(cfg.warmup_ratio * n_total)

    if any(p.dtype != torch.float32 for p in model.parameters()):
        log("finetune: converting the model to float32")
        model.to(torch.float32)
    device = next(model.parameters()).device
    requires_grad_before = {n: p.requires_grad for n, p in model.named_parameters()}

    history = {"losses": [], "lrs": [], "grad_norms": [], "n_steps": 0, "tokens_seen": 0,
               "response_tokens_seen": 0, "wall_time_s": 0.0, "n_examples": len(examples),
               "n_dropped": n_dropped, "n_answer_cut": n_cut, "n_records": len(records),
               "total_steps": n_total, "warmup_steps": warmup,
               "method": cfg.method, "seed": cfg.seed}
    log(f"finetune: {cfg.method}, {len(examples)} examples, {n_total} steps ({warmup} warm-up), "
        f"batch {cfg.batch_size} = {cfg.grad_accum} x {cfg.micro_batch_size}, lr {cfg.lr:g}, "
        f"seed {cfg.seed}")
    rank, n_ranks = distributed.world()
    method = cfg.run.registered
    if n_ranks > 1 and not method.shards:
        raise ValueError(f"{cfg.run.method} trains in one process, and this one is a rank of "
                         f"{n_ranks}: only a method that shards runs over ranks (FSDP, finetune.processes)")
    # the run's state depends on its examples' tokens (the set, its sample, the chat template,
    # max_length) beyond what the job records
    checkpoints = (resume.open(n_total, "finetune", log, examples=digest(examples))
                   if resume is not None else None)
    t_start = time.perf_counter()
    with _deterministic(cfg.deterministic), StopSignal(checkpoints is not None) as stop:
        torch.manual_seed(cfg.seed)
        train_model = method.prepare(model, cfg, context or {})
        if cfg.gradient_checkpointing:
            _checkpointing(model, True)
        if n_ranks > 1:  # before the optimizer: it holds the shards (stsflow.finetune.distributed)
            distributed.shard(train_model)
        params = [p for p in train_model.parameters() if p.requires_grad]
        history["n_trainable"] = sum(p.numel() for p in params)
        opt = torch.optim.AdamW(_param_groups(train_model, cfg.weight_decay), lr=cfg.lr,
                                betas=cfg.betas, eps=1e-8)
        from transformers import get_cosine_schedule_with_warmup

        sched = get_cosine_schedule_with_warmup(opt, num_warmup_steps=warmup,
                                                num_training_steps=n_total)
        step, rng = 0, None
        with checkpoints.reading() if checkpoints is not None else contextlib.nullcontext():
            found = checkpoints.latest() if checkpoints is not None else None
            if found is not None:
                rng = state.load(found[1], train_model, opt, sched)
        if found is not None:
            step, path, saved = found
            for key in ("losses", "lrs", "grad_norms"):
                history[key] = list(saved["history"][key])
            for key in ("tokens_seen", "response_tokens_seen"):
                history[key] = saved["history"][key]
            checkpoints.resumed(step, path)

        def save(at: int, rng_at: dict) -> None:
            checkpoints.save(
                at, lambda d: state.save(d, train_model, opt, sched, rng_at),
                {"epoch": plan[at][0] if at < n_total else cfg.epochs, "history": {
                    k: history[k] for k in ("losses", "lrs", "grad_norms", "tokens_seen",
                                            "response_tokens_seen")}})

        train_model.train()
        plan = _steps(len(examples), cfg, n_total)
        progress = Progress("step", n_total, "steps", log=log, start=step)
        orders: dict[int, np.ndarray] = {}
        while step < n_total:
            epoch, start = plan[step]
            if rng is not None:  # a resumed run: the RNGs as the step found them
                set_rng_state(rng)
            rng_at_start = rng_state() if checkpoints is not None else None
            if epoch not in orders:
                orders = {epoch: np.random.default_rng([cfg.seed, epoch]).permutation(
                    len(examples))}
            t0 = time.perf_counter()
            batch = sorted((examples[i] for i in orders[epoch][start:start + cfg.batch_size]),
                           key=lambda ex: len(ex[0]))
            n_resp = sum(sum(1 for lab in lab_[1:] if lab != IGNORE) for _, lab_ in batch)
            n_tok = sum(len(ids) for ids, _ in batch)
            opt.zero_grad(set_to_none=True)
            loss_sum, stopped = 0.0, False
            chunks = list(length_chunks([len(ex[0]) for ex in batch], cfg.micro_batch_size,
                                        cfg.micro_batch_tokens))
            # one process: every micro-batch at weight 1; several: this rank's share, padded
            for c, weight in distributed.rank_rounds(len(chunks), rank, n_ranks):
                # a SIGTERM on any rank stops every rank here: parameters, optimizer and
                # schedule are still those of the step's start, only the RNGs moved
                if checkpoints is not None and distributed.any_rank(stop.requested):
                    stopped = True
                    break
                ids, att, lab = collate([batch[i] for i in chunks[c]], pad_id, device)
                s, _ = response_loss_sum(train_model, ids, att, lab)
                # one process: exactly s / n_resp; ranks: FSDP averages over them
                (s / n_resp * (weight * n_ranks)).backward()
                loss_sum += weight * float(s.detach())
            if stopped:
                opt.zero_grad(set_to_none=True)
                # step 0 has no state to save (the optimizer's is made by its first step)
                if step and checkpoints.saved != step:
                    save(step, rng_at_start)
                log(f"finetune: stopped by SIGTERM in step {step + 1}/{n_total}; a rerun "
                    f"resumes from step {step}" + (", which is saved" if step else ""))
                raise Interrupted(f"fine-tuning stopped by SIGTERM at step {step}/{n_total} "
                                  f"(checkpoint in {checkpoints.root}); rerun to resume")
            loss_sum = distributed.all_sum(loss_sum)
            if cfg.grad_clip:
                gnorm = float(distributed.full_norm(
                    torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)))
            else:
                gnorm = float(distributed.full_norm(torch.nn.utils.get_total_norm(
                    [p.grad for p in params if p.grad is not None])))
            lr = sched.get_last_lr()[0]
            opt.step()
            sched.step()
            step += 1
            rng = None
            dt = time.perf_counter() - t0
            loss = loss_sum / n_resp
            history["losses"].append(loss)
            history["lrs"].append(lr)
            history["grad_norms"].append(gnorm)
            history["tokens_seen"] += n_tok
            history["response_tokens_seen"] += n_resp
            progress.update(1, f"epoch {epoch + 1}/{cfg.epochs} loss {loss:.4f} lr {lr:.3e} "
                               f"grad_norm {gnorm:.3f} tokens {n_tok} tok/s {n_tok / dt:.0f}")
            if checkpoints is not None and step < n_total:
                stopping = distributed.any_rank(stop.requested)  # every rank asks, each step
                if stopping or checkpoints.due(step):
                    opt.zero_grad(set_to_none=True)
                    save(step, rng_state())
                if stopping:
                    log(f"finetune: stopped by SIGTERM after step {step}/{n_total}, which is "
                        "saved; a rerun resumes from it")
                    raise Interrupted(f"fine-tuning stopped by SIGTERM after step "
                                      f"{step}/{n_total} (checkpoint in {checkpoints.root}); "
                                      "rerun to resume")
        if cfg.gradient_checkpointing:
            _checkpointing(model, False)
        opt.zero_grad(set_to_none=True)
        final = method.finish(train_model)
    # full fine-tuning marked the caller's model trainable: put it back as it came. A PEFT
    # wrapper keeps its base frozen and its adapter trainable; sae_select's model keeps its
    # base frozen and its maps trainable (what was trained, as n_trainable counts it)
    if final is model and not is_selective(final):
        for name, p in final.named_parameters():
            p.requires_grad_(requires_grad_before.get(name, True))
    final.eval()
    history["n_steps"] = step
    history["wall_time_s"] = time.perf_counter() - t_start
    history["model"] = final
    return history
