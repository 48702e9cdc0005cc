"""RL fine-tuning with GRPO (``finetune.methods: [grpo]``) through TRL's ``GRPOTrainer``: the
paper's RL exploration (docs/method.md#rl), run in the validation loop like SFT, so its tuned model gets a
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
* **What trains**: a LoRA adapter with the ``finetune.lora_*`` settings, TRL wrapping the model
  (the reference model of the KL term is the base itself, the adapter disabled, so no second
  copy is held), saved as a LoRA checkpoint with that one adapter.
* **Recipe** (``finetune.grpo``): ``steps`` optimizer steps, each on ``prompts_per_step``
  prompts x ``group_size`` sampled completions (temperature ``temperature``, at most
  ``max_new_tokens`` tokens), ``beta`` (KL coefficient), ``lr`` (constant after TRL's default
  schedule is replaced by ``lr_scheduler_type: constant``), TRL's loss (``loss_type``), fixed
  seeds (``seed``: the run's; prompts drawn in a seeded order).
* **Checkpoints** (``stsflow.resume``) are TRL's own (the Trainer's ``_save_checkpoint``: the
  adapter, optimizer, scheduler, every RNG state, the trainer state with its log history),
  written into its output directory under the run's resume directory and moved into a
  complete ``step-<n>`` checkpoint once written; a rerun passes the last one to
  ``train(resume_from_checkpoint=...)``, which restores them and skips the prompts already
  used. SIGTERM stops the run at the next step boundary (TRL's loop has no other), with a
  checkpoint of that step.
"""

from __future__ import annotations

import math
import re

# final-answer markers, strongest first: GSM8K's "#### x", then "the answer is x" up to the end
# of its sentence (a period before a space or the end) or line; LaTeX \boxed{x} is read with its
# braces counted (``_boxed``)
_MARKERS = (re.compile(r"####\s*([^\n]+)"),
            re.compile(r"answer is\s*:?\s*(.+?)(?:\.(?=\s|$)|\n|$)", re.IGNORECASE))
# a number: with thousands separators (1,250), or plain digits (a comma after it is punctuation)
_NUMBER = re.compile(r"-?\$?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?|-?\.\d+")


def _boxed(text: str) -> list[str]:
    """The contents of every ``\\boxed{...}``, nested braces included."""
    out, i = [], text.find("\\boxed{")
    while i >= 0:
        depth, j = 1, i + len("\\boxed{")
        while j < len(text) and depth:
            depth += {"{": 1, "}": -1}.get(text[j], 0)
            j += 1
        if depth == 0:
            out.append(text[i + len("\\boxed{"):j - 1])
        i = text.find("\\boxed{", j)
    return out


def final_answer(text: str | None) -> str | None:
    """The final answer a response states: the last ``#### x``, "the answer is x" or
    ``\\boxed{x}`` (the first marker kind present), else the last number in it; None when there
    is none. Markdown emphasis (``*``) is ignored."""
    if not text:
        return None
    text = text.replace("*", "")
    for found in (_MARKERS[0].findall(text), _boxed(text), _MARKERS[1].findall(text)):
        if found:
            return found[-1].strip()
    numbers = _NUMBER.findall(text)
    return numbers[-1] if numbers else None


def _number(a: str) -> float | None:
    try:
        value = float(a.replace("$", ""))
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def normalise(answer: str | None) -> str | None:
    """An answer as compared: no surrounding space, ``*``, ``$``, trailing ``.``, ``!``, ``;`` or
    outer parentheses, no thousands separators, lower case; a number written as its value
    (``31.0`` -> ``31``)."""
    if answer is None:
        return None
    a = answer.replace("*", "").strip().rstrip(".!;").strip()
    while len(a) > 1 and a[0] + a[-1] in ("()", "[]", "{}"):
        a = a[1:-1].strip()
    a = a.replace("$", "").replace("\\,", "").strip()
    if re.fullmatch(r"-?\d{1,3}(?:,\d{3})+(?:\.\d+)?", a):
        a = a.replace(",", "")
    value = _number(a)
    if value is None:
        return " ".join(a.lower().split())
    return str(int(value)) if value == int(value) else repr(value)


def reference_answer(record: dict) -> str | None:
    """An SFT item's reference answer: its ``answer`` field, else the final answer of its
    reference solution."""
    answer = record.get("answer")
    if answer is not None and str(answer).strip():
        return str(answer)
    return final_answer(record.get("solution"))


def exact_match(completion: str, reference: str | None) -> float:
    """1.0 when the completion's final answer equals the reference answer (both normalised).
    A numeric reference is compared with the first number of the stated answer after its last
    ``=`` (an answer written as a computation, ``100 - 69 = 31``, states its result last), so a
    unit or a word after it (``4 hours``, ``52 years old``) does not count against it."""
    ref = normalise(reference)
    stated = final_answer(completion)
    if ref is None or stated is None:
        return 0.0
    if _number(ref) is not None:
        first = _NUMBER.search(stated.replace("*", "").rsplit("=", 1)[-1])
        return float(first is not None and normalise(first.group(0)) == ref)
    return float(normalise(stated) == ref)


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
               log=print, context: dict | None = None, resume=None) -> dict:
    """GRPO on the SFT items with the exact-match reward. ``recipe``: FinetuneSettings with
    ``grpo`` set. Returns the trained PEFT model and the history: per step the loss, mean
    reward and its spread, KL, mean completion length, and the reward of every step.
    ``resume``: where the run checkpoints (stsflow.resume), as the SFT loop does."""
    import contextlib
    import os
    import tempfile

    import numpy as np
    import torch
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import TrainerCallback
    from trl import GRPOConfig, GRPOTrainer

    from stsflow.progress import Progress
    from stsflow.resume import Interrupted, StopSignal, digest
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
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    checkpoints = (resume.open(g["steps"], "grpo", log, prompts=digest([rows[i] for i in order]))
                   if resume is not None else None)
    with checkpoints.reading() if checkpoints is not None else contextlib.nullcontext():
        found = checkpoints.latest() if checkpoints is not None else None
    progress = Progress("grpo step", g["steps"], "steps", log=log,
                        start=found[0] if found else 0)
    stop = StopSignal(checkpoints is not None)

    class _Steps(TrainerCallback):
        """Each step's line as it ends; a checkpoint where one is due or SIGTERM came (TRL
        saves it after this call), then moved into place as complete."""

        def on_log(self, args, state, control, logs=None, **kw):
            if logs and "reward" in logs:
                progress.update(detail=_step_line(logs), done=state.global_step)

        def on_step_end(self, args, state, control, **kw):
            if checkpoints is None or state.global_step >= g["steps"]:
                return
            if checkpoints.due(state.global_step) or stop.requested:
                control.should_save = True
            if stop.requested:
                control.should_training_stop = True

        def on_save(self, args, state, control, **kw):
            step = int(state.global_step)
            written = os.path.join(args.output_dir, f"checkpoint-{step}")
            checkpoints.save(step, lambda d: os.rename(written, d / "trainer"))

    with contextlib.ExitStack() as stack:
        stack.enter_context(stop)
        # TRL writes its checkpoints where the run's resume directory keeps them
        out = (str(checkpoints.root / "trl") if checkpoints is not None
               else stack.enter_context(tempfile.TemporaryDirectory()))
        args = GRPOConfig(
            output_dir=out, max_steps=g["steps"], learning_rate=g["lr"],
            lr_scheduler_type="constant", warmup_steps=0,
            per_device_train_batch_size=g["prompts_per_step"] * g["group_size"],
            num_generations=g["group_size"], gradient_accumulation_steps=1,
            max_completion_length=g["max_new_tokens"], temperature=g["temperature"],
            beta=g["beta"], loss_type=g["loss_type"], seed=recipe.seed, data_seed=recipe.seed,
            shuffle_dataset=False, logging_steps=1, save_strategy="no", report_to="none",
            use_cpu=next(model.parameters()).device.type == "cpu", bf16=False, fp16=False,
            max_grad_norm=recipe.grad_clip or 0.0, disable_tqdm=True,
            # TRL turns activation checkpointing on by default; here it follows the recipe
            # (finetune.gradient_checkpointing), as SFT does: off, the backward pass does not
            # run the forward again
            gradient_checkpointing=recipe.gradient_checkpointing,
            dataloader_num_workers=0)
        os.environ.setdefault("WANDB_MODE", "disabled")
        # the plain model and the LoRA config: TRL wraps it, and with beta > 0 takes the
        # adapter-disabled model as the KL reference (given a model already wrapped, it would
        # copy the adapter as a second, "ref" one, saved into the checkpoint too)
        trainer = GRPOTrainer(model=model, reward_funcs=[exact_match_reward], args=args,
                              train_dataset=data, processing_class=tokenizer,
                              callbacks=[_Steps()], peft_config=lora)
        peft_model = trainer.model
        n_trainable = sum(p.numel() for p in peft_model.parameters() if p.requires_grad)
        if found is not None:
            checkpoints.resumed(found[0], found[1])
        trainer.train(resume_from_checkpoint=str(found[1] / "trainer") if found else None)
        if stop.requested and trainer.state.global_step < g["steps"]:
            log(f"grpo: stopped by SIGTERM after step {trainer.state.global_step}/{g['steps']}, "
                "which is saved; a rerun resumes from it")
            raise Interrupted(f"grpo stopped by SIGTERM after step {trainer.state.global_step}"
                              f"/{g['steps']} (checkpoint in {checkpoints.root}); rerun to resume")
    if list(getattr(peft_model, "peft_config", {})) != ["default"]:
        raise RuntimeError(f"grpo: expected one LoRA adapter, got "
                           f"{list(getattr(peft_model, 'peft_config', {}))}")
    # every step's logged figures, those of the attempts before a resume included (TRL keeps
    # them in its checkpoints' trainer state)
    steps = [{**{k: float(v) for k, v in e.items() if isinstance(v, (int, float))},
              "step": int(e["step"])} for e in trainer.state.log_history if "reward" in e]
    peft_model.eval()

    def col(key):
        return [s.get(key, float("nan")) for s in steps]

    # a step whose every group got one reward has no advantage and moves nothing: with no
    # such step the adapter is still zero and the tuned model is the base
    max_lora_b = max((float(p.detach().abs().max()) for n, p in peft_model.named_parameters()
                      if "lora_B" in n), default=0.0)

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
            "extra": {"rl": {"steps_with_signal": int(sum(1 for z in col("frac_reward_zero_std")
                                                          if z < 1)),
                             "max_abs_lora_b": max_lora_b,
                             "reward_first": rewards[0] if rewards else None,
                             "reward_last": rewards[-1] if rewards else None,
                             "reward_mean": float(np.mean(rewards)) if rewards else None,
                             "n_prompts": len(rows), "n_prompt_retokenized": n_retok,
                             "n_no_reference": n_no_ref, "trl": _trl_version()}}}


def _step_line(logs: dict) -> str:
    def get(key):
        return float(logs.get(key, float("nan")))

    return (f"reward {get('reward'):.3f} ± {get('reward_std'):.3f}, loss {get('loss'):.4f}, "
            f"kl {get('kl'):.4f}, completion length {get('completions/mean_length'):.1f}")


def _trl_version() -> str:
    from importlib.metadata import version

    return version("trl")
