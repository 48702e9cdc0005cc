"""The one prefix-cache helper: run a shared prefix (chat head, demonstrations) once and hand each
batch its own copy of the key/value cache, across the transformers cache APIs."""

from __future__ import annotations

import torch

from stsflow.models.tap import LayerTap


def prefix_cache(model, prefix: list[int], tap: "LayerTap | None" = None):
    """KV cache of a prefix that a batch of inputs shares (chat head, demonstrations): the prefix
    runs once, through ``tap`` (stopping after its layer) or the whole model. None when empty.
    The one place a shared prefix is cached; ``copy_cache`` hands out copies."""
    from transformers import DynamicCache

    if not prefix:
        return None
    cache = DynamicCache(config=model.config)
    inputs = {"input_ids": torch.tensor([prefix], device=next(model.parameters()).device),
              cache_kwarg(model): cache}
    with torch.no_grad():
        if tap is not None:
            tap.run(model, **inputs)
        else:
            model(**inputs, use_cache=True)
    return cache


def copy_cache(cache, batch: int = 1):
    """A private copy of a prefix cache, repeated for ``batch`` rows (forward passes extend the
    cache they are given, so the shared one is never passed itself)."""
    import copy

    if cache is None:
        return None
    past = copy.deepcopy(cache)
    if batch > 1:
        past.batch_repeat_interleave(batch)
    return past


def cache_kwarg(model) -> str:
    """Name of the KV-cache argument of ``model.forward`` (transformers renamed
    ``past_key_values`` to ``cache`` in 5.x; older releases only know the former)."""
    import inspect

    try:
        params = inspect.signature(model.forward).parameters
    except (TypeError, ValueError):
        return "past_key_values"
    return "cache" if "cache" in params else "past_key_values"
