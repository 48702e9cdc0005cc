"""Generation engines of the ``generate`` metric: what turns the official MMLU-Pro prompts into
greedy continuations. The metric (``scoring.eval_generate``) builds the prompts, checks that each
fits the context, and scores the texts; an engine only generates, with the decoding settings of
``decoding`` (the same in every engine), so every engine answers the same prompts and is scored
by the same extraction.

Engines are registered by name (``evaluate.generate_backend``; the schema's enum is checked
against this registry): ``builtin`` (Hugging Face ``generate`` in length-sorted, left-padded
batches, here) and lm-evaluation-harness's ``hf`` and ``vllm`` model types (``harness``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from stsflow.models.batching import pad_batch, pad_id_of, token_batches
from stsflow.progress import Progress


def fits(n_prompt: int, max_new_tokens: int, limit: int) -> bool:
    """Whether a prompt of ``n_prompt`` tokens leaves room for ``max_new_tokens`` below the
    context limit: the official script's rule, prompt + new tokens < max_model_length."""
    return n_prompt + max_new_tokens < limit


@dataclass(frozen=True)
class GenerationJob:
    """What every engine is given. ``prompts``: token ids (BOS or the chat head included);
    ``texts``: the same prompts as text (head + body), for engines that tokenize themselves
    (the built-in engine does not read them);
    ``eos_ids``: the ids that end an answer (the tokenizer's and the generation config's);
    ``context_limit``: prompt + ``max_new_tokens`` stay below it (``fits``; no engine may cut a
    prompt to fit, so one that does not fit is refused before generating); ``args``: the
    engine's own settings (``evaluate.lm_eval_args``); ``model_dir``/``dtype``: the prepared
    model, for engines that load it themselves."""

    prompts: list[list[int]]
    max_new_tokens: int
    stop_strings: tuple[str, ...]
    eos_ids: list[int]
    batch_size: int
    batch_tokens: int | None = None
    texts: list[str] | None = None
    context_limit: int | None = None
    args: dict = field(default_factory=dict)
    model_dir: str | None = None
    dtype: str | None = None

    def fits(self, n_prompt: int) -> bool:
        return self.context_limit is None or fits(n_prompt, self.max_new_tokens,
                                                  self.context_limit)


@dataclass(frozen=True)
class Generation:
    """One continuation: its text up to EOS or the first stop string (both excluded), the
    tokens generated (the EOS counted) and why it ended ("eos", "stop", "length"). Engines that
    return only text leave ``n_generated`` and ``finish`` None. ``prompt_tokens``: the length
    of the prompt as the engine tokenized it."""

    text: str
    n_generated: int | None
    finish: str | None
    prompt_tokens: int


Engine = Callable[..., list[Generation]]  # engine(model, tokenizer, job) -> one per prompt
ENGINES: dict[str, Engine] = {}


def register_engine(name: str):
    """Register a generation engine under ``name`` (the value of
    ``evaluate.generate_backend``)."""
    def wrap(fn):
        if name in ENGINES:
            raise ValueError(f"generation engine {name!r} is registered twice")
        ENGINES[name] = fn
        return fn
    return wrap


def eos_ids(model, tokenizer) -> list[int]:
    """The ids that end an answer: the model's generation config's EOS and the tokenizer's."""
    ids = []
    gen_eos = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    for val in (gen_eos, getattr(tokenizer, "eos_token_id", None)):
        if isinstance(val, int):
            ids.append(val)
        elif isinstance(val, (list, tuple)):
            ids.extend(int(v) for v in val)
    return sorted(set(ids))


def cut_continuation(tokenizer, new: list[int], eos: list[int], pad_id: int, stop_strings,
                     max_new_tokens: int) -> Generation:
    """A continuation's tokens as an answer: cut at the first EOS (excluded, counted), trailing
    padding dropped, decoded without special tokens, cut at the first stop string."""
    eos_set = set(eos)
    cut = next((j for j, t in enumerate(new) if t in eos_set), None)
    if cut is not None:
        toks, n_gen, finish = new[:cut], cut + 1, "eos"
    else:
        n_gen = len(new)
        while n_gen > 0 and new[n_gen - 1] == pad_id and n_gen < max_new_tokens:
            n_gen -= 1
        toks, finish = new[:n_gen], "length"
    text = tokenizer.decode(toks, skip_special_tokens=True)
    hits = [text.find(s) for s in stop_strings if s and s in text]
    if hits:
        text, finish = text[:min(hits)], "stop"
    return Generation(text, n_gen, finish, prompt_tokens=0)


@register_engine("builtin")
@torch.no_grad()
def builtin(model, tokenizer, job: GenerationJob) -> list[Generation]:
    """Hugging Face ``generate``, greedy (``decoding``), in left-padded batches, longest prompts
    first; with ``batch_tokens``, rows x (the longest prompt + max_new_tokens), the size the
    batch's cache grows to, within that budget."""
    from transformers import GenerationConfig

    from stsflow.evaluate.decoding import HF_GREEDY, greedy

    pad_id = pad_id_of(tokenizer)
    gen_cfg = GenerationConfig(**HF_GREEDY, max_new_tokens=job.max_new_tokens,
                               eos_token_id=job.eos_ids or None, pad_token_id=pad_id,
                               stop_strings=list(job.stop_strings) or None)
    device = next(model.parameters()).device
    out: list[Generation | None] = [None] * len(job.prompts)
    progress = Progress("generate", len(job.prompts), "prompts")
    with greedy(model):
        for idx in token_batches([len(p) + job.max_new_tokens for p in job.prompts],
                                 job.batch_size, job.batch_tokens):
            input_ids, attention = pad_batch([job.prompts[i] for i in idx], pad_id, left=True)
            width = input_ids.shape[1]
            gen = model.generate(input_ids=input_ids.to(device),
                                 attention_mask=attention.to(device), generation_config=gen_cfg,
                                 tokenizer=tokenizer)
            for r, i in enumerate(idx):
                got = cut_continuation(tokenizer, gen[r, width:].tolist(), job.eos_ids, pad_id,
                                       job.stop_strings, job.max_new_tokens)
                out[i] = Generation(got.text, got.n_generated, got.finish, len(job.prompts[i]))
            progress.update(len(idx), f"{sum(o.n_generated for o in out if o)} tokens generated")
    return out
