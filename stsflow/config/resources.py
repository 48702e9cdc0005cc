"""Memory and runtime requests of the jobs that run a model, derived from the model's shape, its
dtype, the batch, the step and (runtime) the job's tokens, so that one profile fits a 135M and a
9B model. No torch: the workflow computes these while it plans. The runtime terms are at the
end of the module.

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
* fine-tuning converts the model to float32 (docs/method.md#fine-tuning): LoRA holds the frozen weights ``4n``
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
  the loaded weights (``n·b + 4n``); the float32 model a full fine-tune saves (``4n``); the
  residuals an SAE trained here keeps (at most ``SAE_RESIDUALS``, ``stsflow.sae.train``); with
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
# host memory in which prepare_sae keeps the residuals of the windows that train an SAE, so
# that training for more tokens than the corpora hold runs the model over them once
SAE_RESIDUALS = 1e9


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
         trains_sae: bool = False, merges_adapter: bool = False, logits: bool = True,
         shards: int = 1) -> Need:
    """The memory of one job of ``step``:

    * ``inference``: a forward pass of the model in ``dtype`` (evaluation, the before/after
      means; ``new_tokens`` > 0 adds generation's KV cache);
    * ``extract``: a forward pass stopped after the layer (no logits) and the SAE of
      ``sae_width`` encoding the batch;
    * ``gradients``: forward and backward through rank-8 LoRA adapters, one example at a time;
    * ``sae``: inference plus an SAE of ``sae_width``, trained in float32 when ``trains_sae``
      (``prepare_sae``);
    * ``adapter`` / ``full_weights``: fine-tuning in float32 (``batch`` is the micro-batch) of a
      small trainable part on a frozen model (LoRA, selective maps) or of every weight (the
      fine-tuning registry's ``plan_as``);
    * ``encode``: a sweep SAE on kept residuals, no model.

    ``merges_adapter``: the job loads a LoRA checkpoint, merged into a float32 base on the host;
    ``logits``: whether an inference job computes the LM head's output; ``shards``: the GPUs a
    full fine-tune is sharded over (FSDP: each holds 1/shards of the weights, gradients and AdamW
    states, its own micro-batch's activations, and whole in float32 with their gradients the
    root module's embedding and LM head, unsharded through the step, and two blocks, the one
    running and the one prefetched; the figure is per GPU)."""
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
    elif step == "adapter":  # a frozen model and a small trainable part: saves that part only
        gpu = 4 * n + backward_bytes(s, batch, tokens, checkpointing)
    elif step == "full_weights":
        gathered = 0
        if shards > 1:  # embedding and LM head counted untied (the upper bound)
            root = 2 * s.vocab_size * s.hidden_size
            gathered = 2 * 4 * (root + 2 * (n - root) / s.n_layers)
        gpu = 16 * n / shards + gathered + backward_bytes(s, batch, tokens, checkpointing)
        # each rank loads the whole float32 model on its GPU before sharding it
        gpu = max(gpu, 4 * n) if shards > 1 else gpu
        host = HOST_BASE + max(weights, 4 * n)  # the float32 model it saves
        if shards > 1:  # every rank's process loads the model; rank 0 gathers it to save
            host = shards * (HOST_BASE + weights) + 4 * n
    else:
        raise ValueError(f"unknown step {step!r}")
    if merges_adapter:
        host = max(host, HOST_BASE + weights + 4 * n)
    if device_is_cpu:  # a sharded run's ranks each hold their working set on the host
        host = max(host, shards * (HOST_BASE + gpu))
    if step == "sae" and trains_sae:
        host += SAE_RESIDUALS
    return Need(gpu_mb=_mb(gpu), host_mb=_mb(host))


# ----------------------------------------------------------------------------- runtime
#
# Runtime requests come from the same shape and the job's token count: compute (FLOPs) over the
# device's throughput, the weights streamed once per decoding step over its memory bandwidth, a
# kernel-launch floor per sequential forward call, and loading. The throughput figures are
# assumptions the config states (``throughput``); ``make gpu-check`` measures the MFU of the
# user's own GPU, and the margin absorbs the rest. A job that outlives its request is retried
# with a longer one (the attempt multiplies it, as the memory).

# English prose averages about 4 characters a BPE token; digits and formulas tokenise worse (the
# embedded default's math set's figure is in docs/performance.md), so 2.5 errs long; each item
# adds its chat-template scaffolding (head, turn markers)
CHARS_PER_TOKEN = 2.5
ITEM_TOKENS = 64
START_S = 120.0        # process start, imports, tokenizer, the SAE; a job is never shorter
LOAD_BPS = 0.5e9       # weights read from a shared filesystem, bytes per second
# weights read again on the same node (a group job's loads after the first: the page cache
# holds the file), bytes per second; an assumption like the one above (host memory copies)
CACHE_BPS = 5e9


@dataclass(frozen=True)
class Speed:
    """Throughput of the machine that runs a job (the config's ``throughput``)."""

    gpu_tflops: dict  # dense peak of one GPU by dtype, TFLOP/s
    gpu_mfu: float  # fraction of that peak a batched forward/backward reaches
    gpu_bandwidth_gbs: float  # GPU memory bandwidth, GB/s (decoding streams the weights)
    cpu_gflops: float  # achieved GFLOP/s of one CPU thread
    launch_ms_per_layer: float  # eager kernel launches of one block's forward, ms
    margin: float  # requested = estimate x margin

    @classmethod
    def from_config(cls, cfg: dict) -> "Speed":
        return cls(gpu_tflops=dict(cfg["gpu_tflops"]), gpu_mfu=cfg["gpu_mfu"],
                   gpu_bandwidth_gbs=cfg["gpu_bandwidth_gbs"], cpu_gflops=cfg["cpu_gflops"],
                   launch_ms_per_layer=cfg["launch_ms_per_layer"], margin=cfg["margin"])


@dataclass(frozen=True)
class Work:
    """What one job computes: FLOPs in the dtype the math runs in, sequential forward calls
    (each pays the launch floor), decoding steps (each streams the weights and the KV cache),
    and bytes loaded at start."""

    flops: float
    dtype: str
    calls: int = 0
    decode_steps: int = 0
    decode_bytes: float = 0.0  # read per decoding step
    load_bytes: float = 0.0


def text_size(path) -> tuple[int, int] | None:
    """(rows, characters of every text column, options included) of a materialised Parquet
    file, or None when it does not exist yet (a dry run before materialisation)."""
    from pathlib import Path

    import pyarrow as pa
    import pyarrow.compute as pc
    from stsflow.io.files import read_table

    if path is None or not Path(path).exists():
        return None
    table = read_table(path)
    chars = 0
    for col in table.columns:
        typ = col.type
        if pa.types.is_list(typ) or pa.types.is_large_list(typ):
            col, typ = pc.list_flatten(col), typ.value_type
        if pa.types.is_string(typ) or pa.types.is_large_string(typ):
            chars += int(pc.sum(pc.utf8_length(col)).as_py() or 0)
    return table.num_rows, chars


def tokens_per_item(rows: int, chars: int) -> int:
    """Estimated tokens of one item (row) of a Parquet input with ``chars`` text characters."""
    return int(math.ceil(chars / max(rows, 1) / CHARS_PER_TOKEN)) + ITEM_TOKENS


def work(step: str, s: Shape, *, dtype: str, tokens: int, calls: int = 0, layer: int | None = None,
         sae_width: int | None = None, eval_tokens: int = 0, checkpointing: bool = False,
         gen_items: int = 0, new_tokens: int = 0, batch: int = 1, context: int = 0,
         float32_weights: bool = False) -> Work:
    """The work of one job of ``step`` (the steps of ``need``) over ``tokens`` tokens:

    * a forward pass costs ``2n`` FLOPs a token, stopped after block ``layer`` the share of
      blocks it runs; an SAE ``2·width·H`` to encode and as much to decode;
    * ``extract``: the stopped forward and the encoding; ``encode``: the SAE alone;
    * ``sae``: training on ``tokens`` (stopped forward, SAE forward and backward ``6·2·width·H``)
      when ``sae_width`` is trained, and three full forwards over ``eval_tokens`` (clean, SAE
      spliced in, zeros spliced in: ``sae.quality``);
    * ``inference``: full forwards over ``tokens`` (the caller counts the passes), and
      ``new_tokens`` generated for each of ``gen_items`` items, in batches of ``batch`` after
      prompts of ``context`` tokens (one prefill call per batch, then one call per new token);
    * ``gradients``: forward and backward, ``4n`` a token (no weight gradients but the
      adapters'); ``adapter``: the same in float32; ``full_weights``: ``6n``; activation checkpointing adds a
      forward (``2n``).

    ``calls``: sequential forward calls (per item or per example), for the launch floor;
    ``float32_weights``: the job loads float32 weights whatever the model's dtype (a full
    fine-tune's checkpoint, the float32 base a LoRA adapter is merged into)."""
    n, H = s.n_params, s.hidden_size
    stopped = 2 * n * (min(layer + 1, s.n_layers) / s.n_layers if layer is not None else 1.0)
    sae = 2 * (sae_width or 0) * H
    load = n * (4 if float32_weights else BYTES[dtype])
    if step == "extract":
        return Work(tokens * (stopped + sae), dtype, calls, load_bytes=load)
    if step == "encode":
        return Work(tokens * 2 * sae, "float32", calls)
    if step == "sae":
        train = tokens * (stopped + 3 * 2 * sae) if sae_width else 0.0
        return Work(train + 3 * eval_tokens * 2 * n, dtype, calls, load_bytes=load)
    if step == "inference":
        flops = tokens * 2 * n
        steps = 0
        if gen_items and new_tokens:
            flops += gen_items * (context + new_tokens) * 2 * n  # prompts and generated tokens
            prefills = math.ceil(gen_items / max(batch, 1))
            calls += prefills
            steps = prefills * new_tokens
        kv = kv_cache_bytes(s, dtype, batch, context, new_tokens) / 2  # half full on average
        return Work(flops, dtype, calls, steps, load + kv, load_bytes=load)
    extra = 2 * n if checkpointing else 0
    if step == "gradients":
        return Work(tokens * (4 * n + extra), dtype, calls, load_bytes=load)
    if step == "adapter":
        return Work(tokens * (4 * n + extra), "float32", calls, load_bytes=load)
    if step == "full_weights":
        return Work(tokens * (6 * n + extra), "float32", calls, load_bytes=load + 4 * n)
    raise ValueError(f"unknown step {step!r}")


@dataclass(frozen=True)
class Seconds:
    """A job's estimated seconds, in three parts: ``start`` (process start, imports, tokenizer,
    the SAE), ``load`` (the weights read from the shared filesystem) and ``busy`` (compute, or
    the launch floor of its calls and decoding steps)."""

    start: float
    load: float
    busy: float

    @property
    def total(self) -> float:
        return self.start + self.load + self.busy


def parts(w: Work, s: Shape, speed: Speed, *, device_is_cpu: bool, threads: int = 1) -> Seconds:
    """Estimated seconds of a job's work on its device, before the margin: start and loading,
    then the larger of its compute and the launch floor of its calls and decoding steps; on a
    GPU each decoding step also streams the weights and the KV cache (memory-bound: taken as
    the larger of that and its launch floor, on top of the compute)."""
    per_call = s.n_layers * speed.launch_ms_per_layer / 1e3
    if device_is_cpu:  # the CPU's achieved rate already holds its efficiency
        compute = w.flops / (speed.cpu_gflops * 1e9 * max(threads, 1))
        busy = max(compute, (w.calls + w.decode_steps) * per_call)
    else:
        if w.dtype not in speed.gpu_tflops:
            raise ValueError(f"throughput.gpu_tflops has no {w.dtype} peak. Fix: give bfloat16, "
                             "float16 and float32")
        compute = w.flops / (speed.gpu_tflops[w.dtype] * 1e12 * speed.gpu_mfu)
        stream = w.decode_bytes / (speed.gpu_bandwidth_gbs * 1e9)
        busy = max(compute, w.calls * per_call) + w.decode_steps * max(stream, per_call)
    return Seconds(START_S, w.load_bytes / LOAD_BPS, busy)


def seconds(w: Work, s: Shape, speed: Speed, *, device_is_cpu: bool, threads: int = 1) -> float:
    """The estimate's total (``parts``): what the runtime request is made of."""
    return parts(w, s, speed, device_is_cpu=device_is_cpu, threads=threads).total


def runtime_min(w: Work, s: Shape, speed: Speed, *, device_is_cpu: bool, threads: int = 1,
                attempt: int = 1) -> int:
    """Runtime request in minutes: the estimate times the margin and the attempt, rounded up to
    five minutes, at least ten."""
    est = seconds(w, s, speed, device_is_cpu=device_is_cpu, threads=threads) * speed.margin / 60
    return max(10, int(math.ceil(est / 5) * 5)) * attempt
