"""The registry of fine-tuning methods: how each prepares the model before training and what it
saves after (full fine-tuning: the whole model; LoRA through peft: the adapter alone, merged
into the base when a job loads it; sae_select: the maps alone, attached to the base when a job
loads it). A new method is one ``register_method`` call; a test keeps
it equal to the schema and the mode names."""

from __future__ import annotations

from dataclasses import dataclass

from stsflow.config.settings import FinetuneSettings


@dataclass(frozen=True)
class Method:
    """A fine-tuning method: ``prepare(model, cfg, context)`` returns the module to train (its
    trainable parameters marked; ``context``: what the job loaded for it, e.g. sae_select's
    ``sites``), ``finish(trained)`` the module to save (a PEFT model saves only its
    adapter: ``stsflow.finetune.checkpoint``). Registered by name; the
    names are ``stsflow.mode.FINETUNE_METHODS`` (a test keeps the two, and the schema, equal)."""

    name: str
    prepare: object
    finish: object
    # a method with its own training loop (grpo): ``train(model, tokenizer, records, recipe,
    # use_chat_template=, log=, context=, resume=)`` returning what stsflow.finetune.train.finetune
    # does, resuming and checkpointing as it does (stsflow.resume);
    # None: that SFT loop, after ``prepare``
    train: object = None


FINETUNE_REGISTRY: dict[str, Method] = {}


def register_method(name: str, prepare, finish, train=None) -> None:
    if name in FINETUNE_REGISTRY:
        raise ValueError(f"fine-tuning method {name!r} is registered twice")
    FINETUNE_REGISTRY[name] = Method(name, prepare, finish, train)


def _full_prepare(model, cfg: FinetuneSettings, context: dict):
    for p in model.parameters():
        p.requires_grad_(True)
    return model


def _wrap_lora(model, cfg: FinetuneSettings, context: dict):
    from peft import LoraConfig, get_peft_model

    lcfg = LoraConfig(r=cfg.lora_r, lora_alpha=cfg.lora_alpha, lora_dropout=cfg.lora_dropout,
                      target_modules=list(cfg.lora_targets), bias="none", task_type="CAUSAL_LM")
    return get_peft_model(model, lcfg)


register_method("full", _full_prepare, lambda trained: trained)
# LoRA keeps the adapter (20 MB on the embedded default) rather than a merged copy of the model
# (saved in float32 as trained: 517 MB there, 30 GB for a 7B model, per run and seed); jobs that
# read the tuned model merge it into the base on load.
register_method("lora", _wrap_lora, lambda trained: trained)


def _attach_maps(model, cfg: FinetuneSettings, context: dict):
    from stsflow.finetune.selective import attach

    if not context.get("sites"):
        raise ValueError("sae_select needs its sites (layers, SAEs, chosen dimensions): "
                         "stsflow.jobs.validate.finetune loads them")
    return attach(model, context["sites"])


# sae_select trains zero-initialised maps on K SAE dimensions per layer, the model frozen; the
# checkpoint keeps the maps and dimensions (stsflow.finetune.selective).
register_method("sae_select", _attach_maps, lambda trained: trained)


def _train_grpo(model, tokenizer, records, recipe, *, use_chat_template, log, context=None,
                resume=None):
    from stsflow.finetune.grpo import train_grpo

    return train_grpo(model, tokenizer, records, recipe, use_chat_template=use_chat_template,
                      log=log, resume=resume)


def _no_sft_loop(model, cfg, context):
    raise RuntimeError("grpo trains in its own loop (stsflow.finetune.grpo), not the SFT loop")


# RL: GRPO through TRL's trainer, on a LoRA adapter (saved as LoRA runs are); its own loop
# (stsflow.finetune.grpo) wraps the model itself
register_method("grpo", _no_sft_loop, lambda trained: trained, train=_train_grpo)
