"""Memory requests of the jobs that run a model, derived from the model's shape, its dtype, the
batch and the step, so that one profile fits a 135M and a 9B model. No torch: the workflow
computes these while it plans.

The model's shape (parameters, hidden size, layers, vocabulary) is read offline where it can be
(``stsflow.config.facts.model_shape``); a hub model before ``fetch_model`` has run takes the
config's ``models.<m>.shape``. Without either the rules keep fixed requests.

Estimates, in bytes (``b`` = bytes per parameter of the model's dtype, ``n`` = parameters,
``B`` = batch, ``T`` = tokens per sequence, ``H`` = hidden size, ``L`` = layers, ``V`` =
vocabulary):

* weights ``n·b``; a forward without gradients keeps one block's transients, taken as
  ``16·B·T·H·b`` (attention projections and the MLP's wider intermediate), plus the logits of the
  whole batch in float32 ``4·B·T·V`` where the job reads them (evaluation, an SAE's loss
  recovered; an extraction stops after its layer);
* generation adds the KV cache of every layer for the prompt and the new tokens,
  ``2·L·B·(T + new)·K·b``, ``K`` the key/value width (heads × head size; ``H`` when unknown, an
  upper bound under grouped-query attention);
* fine-tuning converts the model to float32 (SPEC §5.1): LoRA holds the frozen weights ``4n``
  (adapters are well under 1 %), full fine-tuning weights, gradients and AdamW's two moments
  ``16n``; activations kept for the backward pass ``16·B·T·H·4`` per layer, one layer's worth
  plus every layer's input ``L·B·T·H·4`` with activation checkpointing; logits and their gradient
  ``3·4·B·T·V``, with ``B`` the micro-batch;
* an extraction adds its SAE's float32 weights ``4·2·width·H`` and the dense encoding of a batch,
  taken as four ``B·T·width`` float32 tensors (pre-activations, top-k values, their copies);
* an SAE trained in ``prepare_sae`` holds encoder and decoder with gradients and AdamW's moments,
  ``16·2·width·H``; a pretrained one its float32 weights ``4·2·width·H`` (nothing where its
  width is unknown before it is fetched: a ``hub`` SAE, most registry ids);
* host memory: a process base (Python, torch, CUDA libraries, tokenizer) of 4 GB, plus the
  weights as loaded (``n·b``); the float32 base into which a LoRA adapter is merged, next to
  the loaded weights (``n·b + 4n``); the float32 model a full fine-tune saves (``4n``); with
  ``device: cpu`` at least the whole working set above (``auto`` is planned for a GPU: the
  login node that plans a cluster run may have none, and local runs cap no memory unless
  ``--resources mem_mb=...`` says so).

Totals get 10 % for allocator fragmentation and round up to the next GB. The GPU figure is
what a job needs on one device (``gpu_mem_mb``); ``stsflow plan`` compares it with the GPU's
memory. The retry attempt multiplies the host request, as before; a profile's ``set-resources``
overrides either."""

from __future__ import annotations

import math
from dataclasses import dataclass

BYTES = {"float32": 4, "bfloat16": 2, "float16": 2}
HOST_BASE = 4e9
GB = 1e9


@dataclass(frozen=True)
class Shape:
    n_params: int
    hidden_size: int
    n_layers: int
    vocab_size: int
    kv_dim: int | None = None  # key/value heads x head size (grouped-query attention); None: H


@dataclass(frozen=True)
class Need:
    """What one job needs: GPU memory on its device and host memory, in MB."""

    gpu_mb: int
    host_mb: int


def _mb(nbytes: float) -> int:
    """MB of ``nbytes`` with 10 % headroom, rounded up to the next GB."""
    return int(math.ceil(nbytes * 1.1 / GB) * 1000)


def forward_bytes(s: Shape, dtype: str, batch: int, tokens: int, logits: bool = True) -> float:
    b = BYTES[dtype]
    out = 16 * batch * tokens * s.hidden_size * b
    return out + (4 * batch * tokens * s.vocab_size if logits else 0)


def kv_cache_bytes(s: Shape, dtype: str, batch: int, tokens: int, new_tokens: int) -> float:
    kv = s.kv_dim or s.hidden_size
    return 2 * s.n_layers * batch * (tokens + new_tokens) * kv * BYTES[dtype]


def backward_bytes(s: Shape, micro_batch: int, tokens: int, checkpointing: bool) -> float:
    """Activations kept for the backward pass of a float32 model, and the logits' gradient."""
    per_layer = micro_batch * tokens * s.hidden_size * 4
    kept = (16 + s.n_layers) * per_layer if checkpointing else 16 * s.n_layers * per_layer
    return kept + 3 * 4 * micro_batch * tokens * s.vocab_size


def need(step: str, s: Shape, *, dtype: str, device_is_cpu: bool, batch: int, tokens: int,
         new_tokens: int = 0, checkpointing: bool = False, sae_width: int | None = None,
         trains_sae: bool = False, merges_adapter: bool = False, logits: bool = True) -> Need:
    """The memory of one job of ``step``:

    * ``inference``: a forward pass of the model in ``dtype`` (evaluation, the before/after
      means; ``new_tokens`` > 0 adds generation's KV cache);
    * ``extract``: a forward pass stopped after the layer (no logits) and the SAE of
      ``sae_width`` encoding the batch;
    * ``gradients``: forward and backward through rank-8 LoRA adapters, one example at a time;
    * ``sae``: inference plus an SAE of ``sae_width``, trained in float32 when ``trains_sae``
      (``prepare_sae``);
    * ``lora`` / ``full``: fine-tuning in float32 (``batch`` is the micro-batch);
    * ``encode``: a sweep SAE on kept residuals, no model.

    ``merges_adapter``: the job loads a LoRA checkpoint, merged into a float32 base on the host;
    ``logits``: whether an inference job computes the LM head's output."""
    n, b = s.n_params, BYTES[dtype]
    weights = n * b
    host = HOST_BASE + weights
    if step == "encode":
        gpu = 2 * 4 * (sae_width or 0) * s.hidden_size + batch * tokens * s.hidden_size * 4
        host = HOST_BASE
    elif step == "extract":
        gpu = weights + forward_bytes(s, dtype, batch, tokens, logits=False)
        if sae_width:
            gpu += 4 * 2 * sae_width * s.hidden_size + 4 * 4 * batch * tokens * sae_width
    elif step in ("inference", "sae"):
        gpu = weights + forward_bytes(s, dtype, batch, tokens, logits)
        if new_tokens:
            gpu += kv_cache_bytes(s, dtype, batch, tokens, new_tokens)
        if step == "sae" and sae_width:
            gpu += (16 if trains_sae else 4) * 2 * sae_width * s.hidden_size
    elif step == "gradients":
        gpu = weights + backward_bytes(s, 1, tokens, checkpointing=False) * b / 4
    elif step == "lora":  # saves its adapter only
        gpu = 4 * n + backward_bytes(s, batch, tokens, checkpointing)
    elif step == "full":
        gpu = 16 * n + backward_bytes(s, batch, tokens, checkpointing)
        host = HOST_BASE + max(weights, 4 * n)  # the float32 model it saves
    else:
        raise ValueError(f"unknown step {step!r}")
    if merges_adapter:
        host = max(host, HOST_BASE + weights + 4 * n)
    if device_is_cpu:
        host = max(host, HOST_BASE + gpu)
    return Need(gpu_mb=_mb(gpu), host_mb=_mb(host))
