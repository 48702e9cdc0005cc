"""RL fine-tuning with GRPO (``finetune.methods: [grpo]``) through TRL's ``GRPOTrainer``: the
paper's RL exploration (SPEC §7), run in the validation loop like SFT, so its tuned model gets a
true shift, evaluations, Δ and scores as every run does.

* **Prompts** are the SFT set's queries exactly as SFT and extraction format them: the chat head
  and the user turn with the question, the assistant's turn opened (``Segmenter``), decoded to
  text for TRL; the job counts the prompts whose text TRL would tokenize differently
  (``n_prompt_retokenized``; zero on the embedded default).
* **Reward**: exact match of the completion's final answer with the item's reference answer
  (the SFT set's ``answer`` column, else the final answer of its reference solution):
  ``final_answer`` reads ``#### x``, ``\\boxed{x}`` or "the answer is x", else the last number;
  ``normalise`` drops ``$``, thousands separators, a trailing period and outer parentheses,
  and numbers compare by value (``31`` = ``31.0``). 1.0 or 0.0; no format reward.
* **What trains**: a LoRA adapter with the ``finetune.lora_*`` settings (the reference model of
  the KL term is the base itself, the adapter disabled, so no second copy is held), saved as a
  LoRA checkpoint.
* **Recipe** (``finetune.grpo``): ``steps`` optimizer steps, each on ``prompts_per_step``
  prompts x ``group_size`` sampled completions (temperature ``temperature``, at most
  ``max_new_tokens`` tokens), ``beta`` (KL coefficient), ``lr`` (constant after TRL's default
  schedule is replaced by ``lr_scheduler_type: constant``), TRL's loss (``loss_type``), fixed
  seeds (``seed``: the run's; prompts drawn in a seeded order).
"""

from __future__ import annotations

import math
import re

# final-answer markers, strongest first: GSM8K's "#### x", LaTeX \boxed{x}, "the answer is x"
_MARKERS = (re.compile(r"####\s*([^\n]+)"),
            re.compile(r"\\boxed\{((?:[^{}]|\{[^{}]*\})*)\}"),
            # up to the end of its sentence (a period before a space or the end) or line
            re.compile(r"answer is\s*:?\s*(.+?)(?:\.(?=\s|$)|\n|$)", re.IGNORECASE))
_NUMBER = re.compile(r"-?\$?\d[\d,]*(?:\.\d+)?|-?\.\d+")


def final_answer(text: str | None) -> str | None:
    """The final answer a response states: the last ``#### x``, ``\\boxed{x}`` or "the answer is
    x" (the first marker kind present), else the last number in it; None when there is none."""
    if not text:
        return None
    for pattern in _MARKERS:
        found = pattern.findall(text)
        if found:
            return found[-1].strip()
    numbers = _NUMBER.findall(text)
    return numbers[-1] if numbers else None


def normalise(answer: str | None) -> str | None:
    """An answer as compared: no surrounding space, ``$``, trailing period or outer parentheses,
    no thousands separators, lower case; a number written as its value (``31.0`` -> ``31``)."""
    if answer is None:
        return None
    a = answer.strip().rstrip(".").strip()
    while len(a) > 1 and a[0] + a[-1] in ("()", "[]", "{}"):
        a = a[1:-1].strip()
    a = a.replace("$", "").replace("\\,", "").strip()
    if re.fullmatch(r"-?\d{1,3}(?:,\d{3})+(?:\.\d+)?", a):
        a = a.replace(",", "")
    try:
        value = float(a)
    except ValueError:
        return " ".join(a.lower().split())
    if not math.isfinite(value):
        return a.lower()
    return str(int(value)) if value == int(value) else repr(value)


def reference_answer(record: dict) -> str | None:
    """An SFT item's reference answer: its ``answer`` field, else the final answer of its
    reference solution."""
    answer = record.get("answer")
    if answer is not None and str(answer).strip():
        return str(answer)
    return final_answer(record.get("solution"))


def exact_match(completion: str, reference: str | None) -> float:
    """1.0 when the completion's final answer equals the reference answer (both normalised)."""
    ref = normalise(reference)
    got = normalise(final_answer(completion))
    return float(ref is not None and got is not None and got == ref)


def exact_match_reward(prompts, completions, answer, **kwargs) -> list[float]:
    """The reward function in TRL's signature: ``answer`` is the dataset column of reference
    answers, one per completion."""
    return [exact_match(_text(c), a) for c, a in zip(completions, answer)]


def _text(completion) -> str:
    if isinstance(completion, str):
        return completion
    # a conversational completion: the assistant messages' text
    return "".join(m.get("content", "") for m in completion if isinstance(m, dict))


def train_grpo(model, tokenizer, records: list[dict], recipe, *, use_chat_template: bool,
               log=print, context: dict | None = None) -> dict:
    """GRPO on the SFT items with the exact-match reward. ``recipe``: FinetuneSettings with
    ``grpo`` set. Returns the trained PEFT model and the history: per step the loss, mean
    reward and its spread, KL, mean completion length, and the reward of every step."""
    import os
    import tempfile

    import numpy as np
    import torch
    from datasets import Dataset
    from peft import LoraConfig, get_peft_model
    from transformers import TrainerCallback
    from trl import GRPOConfig, GRPOTrainer

    from stsflow.text.segments import Segmenter

    g = recipe.grpo
    seg = Segmenter.for_tokenizer(tokenizer, use_chat_template)
    head = seg.head()
    rows, n_retok, n_no_ref = [], 0, 0
    for r in records:
        ids = head + seg.query(r, "sft")
        text = tokenizer.decode(ids)
        if tokenizer(text)["input_ids"] != ids:
            n_retok += 1
        ref = reference_answer(r)
        if ref is None:
            n_no_ref += 1
            continue
        rows.append({"prompt": text, "answer": ref})
    if n_no_ref:
        log(f"grpo: {n_no_ref} item(s) without a reference answer left out")
    if not rows:
        raise ValueError("grpo: no SFT item has a reference answer (an answer column, or a "
                         "solution that states one)")
    order = np.random.default_rng([recipe.seed, 1]).permutation(len(rows))
    data = Dataset.from_list([rows[i] for i in order])
    torch.manual_seed(recipe.seed)
    model.to(torch.float32)
    lora = LoraConfig(r=recipe.lora_r, lora_alpha=recipe.lora_alpha,
                      lora_dropout=recipe.lora_dropout, target_modules=list(recipe.lora_targets),
                      bias="none", task_type="CAUSAL_LM")
    peft_model = get_peft_model(model, lora)
    n_trainable = sum(p.numel() for p in peft_model.parameters() if p.requires_grad)
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    steps: list[dict] = []

    class _Record(TrainerCallback):
        def on_log(self, args, state, control, logs=None, **kw):
            if logs and "reward" in logs:
                steps.append({"step": int(state.global_step), **{
                    k: float(v) for k, v in logs.items() if isinstance(v, (int, float))}})

    with tempfile.TemporaryDirectory() as out:
        args = GRPOConfig(
            output_dir=out, max_steps=g["steps"], learning_rate=g["lr"],
            lr_scheduler_type="constant", warmup_steps=0,
            per_device_train_batch_size=g["prompts_per_step"] * g["group_size"],
            num_generations=g["group_size"], gradient_accumulation_steps=1,
            max_completion_length=g["max_new_tokens"], temperature=g["temperature"],
            beta=g["beta"], loss_type=g["loss_type"], seed=recipe.seed, data_seed=recipe.seed,
            shuffle_dataset=False, logging_steps=1, save_strategy="no", report_to="none",
            use_cpu=not torch.cuda.is_available(), bf16=False, fp16=False,
            max_grad_norm=recipe.grad_clip or 0.0, disable_tqdm=True,
            # TRL turns activation checkpointing on by default; here it follows the recipe
            # (finetune.gradient_checkpointing), as SFT does: off, the backward pass does not
            # run the forward again
            gradient_checkpointing=recipe.gradient_checkpointing,
            dataloader_num_workers=0)
        os.environ.setdefault("WANDB_MODE", "disabled")
        trainer = GRPOTrainer(model=peft_model, reward_funcs=[exact_match_reward], args=args,
                              train_dataset=data, processing_class=tokenizer,
                              callbacks=[_Record()])
        trainer.train()
    for s in steps:
        log(f"grpo step {s['step']}/{g['steps']}: reward {s.get('reward', float('nan')):.3f} "
            f"± {s.get('reward_std', float('nan')):.3f}, loss {s.get('loss', float('nan')):.4f}, "
            f"kl {s.get('kl', float('nan')):.4f}")
    peft_model.eval()

    def col(key):
        return [s.get(key, float("nan")) for s in steps]

    rewards = col("reward")
    return {"model": peft_model, "n_trainable": n_trainable,
            # what the SFT loop returns (stsflow.finetune.train), for the job's history
            "losses": col("loss"), "lrs": col("learning_rate"), "grad_norms": col("grad_norm"),
            "n_examples": len(rows), "n_records": len(records), "n_answer_cut": 0,
            "n_steps": len(steps), "tokens_seen": int(max(col("num_tokens"), default=0)),
            # per step: the mean exact-match reward of its completions and their spread, the KL
            # to the base, the mean completion length, the share of groups with one reward
            "columns": {"reward": rewards, "reward_std": col("reward_std"), "kl": col("kl"),
                        "completion_length": col("completions/mean_length"),
                        "zero_std_groups": col("frac_reward_zero_std")},
            "extra": {"rl": {"reward_first": rewards[0] if rewards else None,
                             "reward_last": rewards[-1] if rewards else None,
                             "reward_mean": float(np.mean(rewards)) if rewards else None,
                             "n_prompts": len(rows), "n_prompt_retokenized": n_retok,
                             "n_no_reference": n_no_ref, "trl": _trl_version()}}}


def _trl_version() -> str:
    from importlib.metadata import version

    return version("trl")
