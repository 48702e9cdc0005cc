"""The registry of fine-tuning methods: how each prepares the model before training and what it
saves after (full fine-tuning; LoRA through peft, merged for the true-shift run). A new method
is one ``register_method`` call; a test keeps it equal to the schema and the mode names."""

from __future__ import annotations

from dataclasses import dataclass

from stsflow.config.settings import FinetuneSettings


@dataclass(frozen=True)
class Method:
    """A fine-tuning method: ``prepare(model, cfg)`` returns the module to train (its trainable
    parameters marked), ``finish(trained)`` the plain model to save. Registered by name; the
    names are ``stsflow.mode.FINETUNE_METHODS`` (a test keeps the two, and the schema, equal)."""

    name: str
    prepare: object
    finish: object


FINETUNE_REGISTRY: dict[str, Method] = {}


def register_method(name: str, prepare, finish) -> None:
    if name in FINETUNE_REGISTRY:
        raise ValueError(f"fine-tuning method {name!r} is registered twice")
    FINETUNE_REGISTRY[name] = Method(name, prepare, finish)


def _full_prepare(model, cfg: FinetuneSettings):
    for p in model.parameters():
        p.requires_grad_(True)
    return model


def _wrap_lora(model, cfg: FinetuneSettings):
    from peft import LoraConfig, get_peft_model

    lcfg = LoraConfig(r=cfg.lora_r, lora_alpha=cfg.lora_alpha, lora_dropout=cfg.lora_dropout,
                      target_modules=list(cfg.lora_targets), bias="none", task_type="CAUSAL_LM")
    return get_peft_model(model, lcfg)


register_method("full", _full_prepare, lambda trained: trained)
register_method("lora", _wrap_lora, lambda trained: trained.merge_and_unload())
