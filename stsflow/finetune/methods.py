"""The built-in fine-tuning methods, each registered once with what it trains and what the
workflow plans around it (``stsflow.finetune.registry``): full fine-tuning (the whole model),
LoRA through peft (the adapter alone, merged into the base when a job loads it), sae_select (the
paper's selective fine-tuning: maps on chosen SAE dimensions, attached to the base when a job
loads it) and GRPO (RL through TRL, on a LoRA adapter, in its own loop). A new method is a
module like this one: its functions and one ``register_method`` call."""

from __future__ import annotations

from stsflow.finetune.registry import Variant, register_method

LORA_KEYS = ("lora_r", "lora_alpha", "lora_dropout", "lora_targets")


def _full_prepare(model, cfg, context: dict):
    for p in model.parameters():
        p.requires_grad_(True)
    return model


def _wrap_lora(model, cfg, context: dict):
    from peft import LoraConfig, get_peft_model

    lcfg = LoraConfig(r=cfg.lora_r, lora_alpha=cfg.lora_alpha, lora_dropout=cfg.lora_dropout,
                      target_modules=list(cfg.lora_targets), bias="none", task_type="CAUSAL_LM")
    return get_peft_model(model, lcfg)


def _as_trained(trained):
    return trained


register_method("full", _full_prepare, _as_trained, shards=True, plan_as="full_weights",
                about="every weight of the model (the paper's recipe)")
# LoRA keeps the adapter rather than a merged copy of the model (a merged float32 copy is as
# large as the model, per run and seed); jobs that read the tuned model merge it on load.
register_method("lora", _wrap_lora, _as_trained, adapter=True, plan_as="adapter",
                recipe_keys=LORA_KEYS, about="a LoRA adapter (peft) on the frozen model")


# -- sae_select: zero-initialised maps on K SAE dimensions per layer, the model frozen; the
# checkpoint keeps the maps and dimensions (stsflow.finetune.selective)

def _attach_maps(model, cfg, context: dict):
    from stsflow.finetune.selective import attach

    if not context.get("sites"):
        raise ValueError("sae_select needs its sites (layers, SAEs, chosen dimensions): "
                         "its job loads them (stsflow.finetune.selective.load_sites)")
    return attach(model, context["sites"])


def _select_sites(model: dict, section: dict) -> list[tuple[int, str]]:
    from stsflow.config.saes import select_sites

    return select_sites(model, section)


def _select_recipe(section: dict, model: dict) -> dict:
    """What a run reads of finetune.sae_select: its map sites (K and the selection are in the run's
    name)."""
    sites = _select_sites(model, section)
    return {"layers": [layer for layer, _ in sites], "saes": [sae for _, sae in sites]}


def _select_context(recipe, inputs, device) -> tuple[dict, dict]:
    from stsflow.finetune.selective import load_sites

    sites = load_sites(recipe, inputs, device)
    return {"sites": sites}, {"dims": {str(s.layer): s.dims.tolist() for s in sites}}


def _select_problems(config: dict, section: dict) -> list[str]:
    from stsflow.config.saes import select_problems

    return select_problems(config, section)


SELECT_MODES = ("top", "random")  # the top-K of the predicted shift, or K drawn with the seed
register_method(
    "sae_select", _attach_maps, _as_trained, adapter=False, plan_as="adapter",
    section="sae_select", recipe=_select_recipe, sites=_select_sites, vllm=False,
    context=_select_context, problems=_select_problems,
    variant=Variant(
        pattern=rf"(?P<select>{'|'.join(SELECT_MODES)})-k(?P<k>[1-9]\d*)",
        fields={"select": str, "k": int},
        expand=lambda sec: [{"select": s, "k": int(k)} for k in sec["k"] for s in sec["select"]],
        format=lambda v: f"{v['select']}-k{v['k']}",
        describe=f"<{'|'.join(SELECT_MODES)}>-k<K>"),
    about="maps on K chosen SAE dimensions after chosen blocks, the model frozen")


# -- grpo: RL through TRL's trainer on a LoRA adapter (saved as LoRA runs are); its own loop
# (stsflow.finetune.grpo) wraps the model itself

def _train_grpo(model, tokenizer, records, recipe, *, use_chat_template, log, context=None,
                resume=None):
    from stsflow.finetune.grpo import train_grpo

    return train_grpo(model, tokenizer, records, recipe, use_chat_template=use_chat_template,
                      log=log, resume=resume)


def _no_sft_loop(model, cfg, context):
    raise RuntimeError("grpo trains in its own loop (stsflow.finetune.grpo), not the SFT loop")


register_method("grpo", _no_sft_loop, _as_trained, train=_train_grpo, adapter=True,
                plan_as="adapter", section="grpo", recipe=lambda section, model: section,
                sft_loop=False, recipe_keys=LORA_KEYS,
                about="RL (GRPO, TRL) on a LoRA adapter, rewarded by exact match")
