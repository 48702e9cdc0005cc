"""Checks of the generate metric's engine settings (``evaluate.generate_backend``,
``evaluate.lm_eval_args``), and the facts about vLLM they rest on.

vLLM is not a dependency of stsflow (each release pins its own torch and CUDA build), so what it
accepts is recorded here, from its source, and checked when the config is read; where vLLM is
importable, ``vllm_lora_ranks`` reads its own type instead and the tests compare the two.
Torch-free: the config is checked when the Snakefile is parsed.
"""

from __future__ import annotations

# What stsflow.evaluate.harness sets from the job's model and settings, per engine: lm_eval_args
# may not give them. ``truncation`` and ``mixed_precision_dtype`` are the hf model type's: a
# prompt is never cut (stsflow refuses one that does not fit), and the model runs in its own
# dtype, as with the built-in engine.
LM_EVAL_RESERVED = {
    "lm_eval_hf": ("pretrained", "tokenizer", "backend", "max_length", "add_bos_token", "device",
                   "dtype", "parallelize", "truncation", "mixed_precision_dtype"),
    "lm_eval_vllm": ("pretrained", "tokenizer", "revision", "tokenizer_revision", "dtype",
                     "max_length", "max_model_len", "add_bos_token", "lora_local_path",
                     "max_lora_rank"),
}

# Arguments of lm-evaluation-harness 0.4.13's HFLM that only load a model or tokenizer from a
# name: given the loaded model object (as lm_eval_hf gives it) the harness ignores them without a
# word, so a user who sets one would believe it applied.
LM_EVAL_HF_IGNORED = ("revision", "subfolder", "peft", "delta", "autogptq", "gptqmodel",
                      "gguf_file", "trust_remote_code", "use_fast_tokenizer",
                      "max_memory_per_gpu", "max_cpu_memory", "offload_folder", "tp_plan")

# vLLM's accepted LoRA ranks (``max_lora_rank``), as vllm/config/lora.py's ``MaxLoRARanks`` lists
# them in v0.14.0 and later (there also 1), and as ``LoRAConfig.__post_init__``'s
# ``possible_max_ranks`` listed them since 320 and 512 were added; older releases accepted
# 8..64 or 8..256 only. Without 1, every value here is one that every release accepting ranks
# of its size accepts.
VLLM_LORA_RANKS = (8, 16, 32, 64, 128, 256, 320, 512)

# The dtypes vLLM's LoRA kernels take: vllm/lora/ops/triton_ops/lora_shrink_op.py asserts
# float16 or bfloat16 inputs and weights, and vllm/config/lora.py's ``LoRADType`` offers only
# "auto" (the model's dtype), "float16" and "bfloat16" (v0.11.0 to v0.22).
VLLM_LORA_DTYPES = ("float16", "bfloat16")


def _configured(ft: dict) -> list:
    """The registry entries of the configured fine-tuning methods (stsflow.finetune.registry);
    none when fine-tuning is off."""
    from stsflow.finetune.registry import methods

    return [methods()[m] for m in ft["methods"] if m in methods()] if ft["enabled"] else []


def vllm_lora_ranks() -> tuple[int, ...]:
    """The ranks vLLM accepts as ``max_lora_rank``: its own ``MaxLoRARanks`` where vLLM is
    importable and has it, else the recorded ``VLLM_LORA_RANKS``."""
    import typing

    try:
        from vllm.config.lora import MaxLoRARanks
    except (ImportError, AttributeError):
        return VLLM_LORA_RANKS
    return tuple(sorted(typing.get_args(MaxLoRARanks)))


def vllm_lora_rank(rank: int, accepted: tuple[int, ...] | None = None) -> int:
    """``max_lora_rank`` for an adapter of rank ``rank``: the smallest accepted value at least as
    large (vLLM refuses any other, and serves an adapter of a lower rank than its maximum)."""
    accepted = vllm_lora_ranks() if accepted is None else accepted
    fit = [r for r in accepted if r >= rank]
    if not fit:
        raise ValueError(f"a LoRA adapter of rank {rank}: vLLM serves ranks up to "
                         f"{max(accepted)}. Fix: use evaluate.generate_backend: lm_eval_hf or "
                         "builtin (the adapter merged), or train with a lower finetune.lora_r")
    return min(fit)


def vllm_lora_dtype_problem(where: str, dtype: str) -> str | None:
    """The problem of serving a LoRA adapter in ``dtype`` with vLLM (its LoRA kernels take
    float16 or bfloat16 only), or None."""
    if dtype in VLLM_LORA_DTYPES:
        return None
    return (f"evaluate.generate_backend: lm_eval_vllm applies {where}'s LoRA adapter in the "
            f"model's dtype, {dtype}, and vLLM's LoRA kernels take only "
            f"{' or '.join(VLLM_LORA_DTYPES)}. Fix: set models.<name>.dtype: bfloat16 (for every "
            "job of that model), or use lm_eval_hf or builtin (the adapter merged)")


def lm_eval_args_problems(engine: str, args: dict) -> list[str]:
    """evaluate.lm_eval_args: only for the harness's engines, none of the arguments the workflow
    sets itself, and for lm_eval_hf none that the harness ignores with a model object."""
    if engine not in LM_EVAL_RESERVED:
        return ["evaluate.lm_eval_args: given, but only the lm_eval_* engines read it. Fix: "
                "remove it, or set evaluate.generate_backend: lm_eval_hf or lm_eval_vllm"] \
            if args else []
    problems = [f"evaluate.lm_eval_args.{k}: set by the workflow ({engine}: the prepared model, "
                "models.<name>.dtype, evaluate.max_context; prompts are never truncated). "
                "Fix: remove it"
                for k in sorted(set(args) & set(LM_EVAL_RESERVED[engine]))]
    if engine == "lm_eval_hf":
        problems += [f"evaluate.lm_eval_args.{k}: ignored by lm-evaluation-harness's hf model "
                     "when it is given the model the job loaded (it only applies when the "
                     "harness loads a model by name). Fix: remove it; the model is "
                     "models.<name>.source (and the fine-tuning run's checkpoint)"
                     for k in sorted(set(args) & set(LM_EVAL_HF_IGNORED))]
    return problems


def _adapter_runs(config: dict) -> dict[str, list[str]]:
    """Per model, what it is evaluated with a LoRA adapter for: fine-tuning methods that save
    one, post-hoc pairs whose tuned model is a PEFT adapter."""
    runs: dict[str, list[str]] = {}
    for method in _configured(config["finetune"]):
        if method.adapter:  # its checkpoint is a LoRA adapter that vLLM applies to the base
            for name in config["models"]:
                runs.setdefault(name, []).append(f"finetune.methods {method.name}")
    for label, pair in (config.get("posthoc") or {}).items():
        if "peft" in pair["tuned"] and pair["model"] in config["models"]:
            runs.setdefault(pair["model"], []).append(f"posthoc.{label}")
    return runs


def generate_backend_problems(config: dict) -> list[str]:
    """evaluate.generate_backend and evaluate.lm_eval_args: an engine other than the built-in one
    only with the generate metric, arguments only for the harness's engines and none that the
    workflow sets or the harness ignores; for vLLM no run of a method it cannot serve (selective
    maps run inside the model's blocks), and no LoRA adapter in a dtype its kernels do not take
    or of a rank it does not serve."""
    ev = config["evaluate"]
    engine = ev["generate_backend"]
    problems = lm_eval_args_problems(engine, ev["lm_eval_args"])
    if engine != "builtin" and "generate" not in ev["metrics"]:
        problems.append(f"evaluate.generate_backend: {engine} runs the generate metric, which "
                        f"evaluate.metrics {ev['metrics']} does not list. Fix: add generate to "
                        "evaluate.metrics, or remove generate_backend")
    if engine != "lm_eval_vllm" or "generate" not in ev["metrics"]:
        return problems
    ft = config["finetune"]
    unserved = [m.name for m in _configured(ft) if not m.vllm]
    if unserved:
        problems.append(f"evaluate.generate_backend: lm_eval_vllm cannot serve "
                        f"{', '.join(unserved)} runs (their checkpoints are not models vLLM "
                        "loads). Fix: use lm_eval_hf or builtin, or drop them from "
                        "finetune.methods")
    for name, runs in sorted(_adapter_runs(config).items()):
        problem = vllm_lora_dtype_problem(f"models.{name} ({', '.join(runs)})",
                                          config["models"][name]["dtype"])
        if problem:
            problems.append(problem.replace("models.<name>", f"models.{name}"))
    if any(m.adapter for m in _configured(ft)):
        try:
            vllm_lora_rank(ft["lora_r"], VLLM_LORA_RANKS)
        except ValueError as err:
            problems.append(f"finetune.lora_r: {err}")
    return problems
