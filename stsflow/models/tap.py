"""The residual stream after a decoder block, captured with a forward hook; the forward pass can
stop there (nothing after the tapped layer runs)."""

from __future__ import annotations

import torch


def _module_at(model, paths: tuple[str, ...], what: str):
    """The first of the attribute ``paths`` that the model has (architectures name their parts
    differently); a clear error naming ``what`` when none does."""
    for path in paths:
        obj = model
        try:
            for part in path.split("."):
                obj = getattr(obj, part)
            return obj
        except AttributeError:
            continue
    raise ValueError(f"cannot find the {what} of {type(model).__name__}")


def decoder_layers(model) -> torch.nn.ModuleList:
    """The list of decoder blocks of a causal LM (Llama, Qwen, Gemma, Mistral, GPT-2 style)."""
    return _module_at(model, ("model.layers", "model.language_model.layers", "transformer.h",
                              "gpt_neox.layers"), "decoder layers")


def final_norm(model) -> torch.nn.Module:
    """The norm applied to the last residual stream before the LM head."""
    return _module_at(model, ("model.norm", "model.language_model.norm", "transformer.ln_f",
                              "gpt_neox.final_layer_norm"), "final norm")


class StopForward(Exception):
    """Raised by a forward hook to end the forward pass once what it needs has run."""


class LayerTap:
    """Capture the residual stream after block ``layer`` (its first output) and stop the forward
    pass there: later blocks and the LM head are never computed."""

    def __init__(self, model, layer: int):
        self.block = decoder_layers(model)[layer]
        self.output: torch.Tensor | None = None

    def _hook(self, module, args, output):
        self.output = output[0] if isinstance(output, tuple) else output
        raise StopForward

    def run(self, model, **inputs) -> torch.Tensor:
        handle = self.block.register_forward_hook(self._hook)
        try:
            model(**inputs, use_cache="past_key_values" in inputs or "cache" in inputs)
        except StopForward:
            pass
        finally:
            handle.remove()
        if self.output is None:
            raise RuntimeError("the hooked layer did not run")
        out, self.output = self.output, None
        return out
