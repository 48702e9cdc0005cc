"""The teacher-forced pass of an evaluation: per item, one forward of its query on the shared
prefix's KV cache, then one batched forward of its continuations on copies of that cache.

The continuations are the item's options (``option_loglik``) and its reference response
(``nll``); the query's forward also yields the residual stream after every block at the query's
tokens (the layer means of the before/after-SFT similarity, ``features.reps``). So each token
of an item runs through the model once, whatever the metrics that read it (before, the NLL pass,
the options' pass and the layer means each ran the query again), and the continuations run in
batches of similar lengths (a reference answer padded together with short options costs several
times its tokens; the measured saving is in docs/performance.md).

Equal, up to float summation order, to the direct computations: a continuation's token log-probs
are those of one forward over prefix + query + continuation (causal attention: the cached keys
and values are the ones that forward computes), and the residual at a query token does not
depend on anything after it. Tested against direct forwards in ``tests/evaluate``."""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from stsflow.models.batching import length_chunks, pad_batch
from stsflow.models.cache import cache_kwarg, copy_cache, prefix_cache
from stsflow.models.tap import decoder_layers
from stsflow.progress import Progress
from stsflow.text.prompts import drop_na_options, reference_text


@dataclass
class Forced:
    """What the pass read, per item in input order: each option's token log-probs (``options``),
    the reference response's token log-probs and which reference it is (``reference``); the
    residual sums over the counted query tokens at every block and their count."""

    options: list | None = None
    reference: list | None = None
    sums: np.ndarray | None = None
    n_tokens: int = 0
    records: list = field(default_factory=list)  # the records the options were scored on


def _ids(tokenizer, text: str) -> list[int]:
    return list(tokenizer(text, add_special_tokens=False)["input_ids"]) if text else []


def _out_cache(out):
    cache = out.get("cache") if hasattr(out, "get") else None
    return cache if cache is not None else out.past_key_values


def _forward_last(model, **inputs):
    """A forward whose LM head runs on the last position only, where the model allows it."""
    if "logits_to_keep" in inspect.signature(model.forward).parameters:
        return model(**inputs, logits_to_keep=1)
    return model(**inputs)


class _Residuals:
    """Forward hooks on every block that add the block's output at the counted positions of the
    current query (float64), while ``positions`` (their indices) is set."""

    def __init__(self, model):
        self.blocks = decoder_layers(model)
        self.positions: torch.Tensor | None = None
        self.sums: torch.Tensor | None = None
        self.handles: list = []

    def attach(self) -> _Residuals:
        self.handles = [blk.register_forward_hook(self._hook(i))
                        for i, blk in enumerate(self.blocks)]
        return self

    def detach(self) -> None:
        for h in self.handles:
            h.remove()

    def _hook(self, i):
        def capture(module, args, output):
            if self.positions is None:
                return
            hidden = output[0] if isinstance(output, tuple) else output
            part = hidden[0].index_select(0, self.positions).double().sum(0)
            if self.sums is None:
                self.sums = torch.zeros((len(self.blocks), part.shape[-1]), dtype=torch.float64,
                                        device=part.device)
            self.sums[i] += part
        return capture


@torch.no_grad()
def item_pass(model, tokenizer, items: list[dict], *, segmenter, prefix: list[int],
              options: bool = False, reference: str | None = None, residuals: bool = False,
              max_length: int | None = None, residual_max_length: int | None = None,
              batch_size: int = 10, batch_tokens: int | None = None) -> Forced:
    """The pass over ``items`` after ``prefix`` (chat head, demonstrations), reading:

    * ``options``: per item the token log-probs of each option (after "N/A" options are
      dropped), each option tokenized on its own;
    * ``reference``: the record kind ("domain", "sft") whose reference response
      (``prompts.reference_text`` + the turn's closing) is scored; ``max_length`` cuts prefix +
      query + response, scoring what is left of the response;
    * ``residuals``: sums over the query's own tokens (``Segmenter.query_parts``), the first
      ``residual_max_length`` of the query, of every block's output.

    The query is the record's query segment of kind ``reference`` (or "domain")."""
    device = next(model.parameters()).device
    was_training = model.training
    kind = reference or "domain"
    cache_kw = cache_kwarg(model)
    out = Forced(options=[] if options else None, reference=[] if reference else None)
    # nothing after the query is read: its cut is all that runs (a query longer than the
    # model's context never reaches it), as extraction cuts queries
    cut = residual_max_length if not (options or reference) else None
    tap = _Residuals(model) if residuals else None
    try:
        model.eval()
        if tap:
            tap.attach()
        shared = prefix_cache(model, prefix)
        progress = Progress("evaluate", len(items), "items")
        for item in items:
            rec = drop_na_options(item) if options else item
            out.records.append(rec)
            if residuals:
                query, counted = segmenter.query_parts(item, kind)
                query, counted = list(query)[:cut], list(counted)[:cut]
                if residual_max_length is not None:
                    counted = counted[:residual_max_length] + [False] * max(
                        0, len(counted) - residual_max_length)
            else:
                query, counted = segmenter.query(item, kind), None
            ctx_len = len(prefix) + len(query)
            conts: list[list[int]] = []
            if options:
                conts += [_ids(tokenizer, str(o).strip()) for o in rec["options"]]
            which = None
            if reference:
                text, which = reference_text(item, reference)
                resp = _ids(tokenizer, text + segmenter.layout.assistant_close)
                if max_length is not None:
                    resp = resp[:max(0, max_length - ctx_len)]
                conts.append(resp)
            # the query, on a copy of the prefix's cache: its last position's distribution
            if tap:  # the counted positions as indices, built once per item (no sync per block)
                tap.positions = torch.tensor([j for j, c in enumerate(counted) if c], dtype=torch.long,
                                        device=device)
                out.n_tokens += int(sum(counted))
            q_out = _forward_last(model, input_ids=torch.tensor([query], device=device),
                                  attention_mask=torch.ones((1, ctx_len), dtype=torch.long,
                                                            device=device),
                                  use_cache=True, **{cache_kw: copy_cache(shared)})
            if tap:
                tap.positions = None
            first_logp = F.log_softmax(q_out.logits[0, -1].float(), dim=-1)
            item_cache = _out_cache(q_out)
            per_token = _continuations(model, item_cache, ctx_len, first_logp, conts, batch_size,
                                       cache_kw, device, batch_tokens)
            if options:
                out.options.append(per_token[:len(rec["options"])])
            if reference:
                out.reference.append((per_token[-1], which))
            progress.update()
        if tap and tap.sums is not None:
            out.sums = tap.sums.cpu().numpy()
    finally:
        if tap and tap.handles:
            tap.detach()
        if was_training:
            model.train()
    return out


def _continuations(model, item_cache, ctx_len: int, first_logp: torch.Tensor,
                   conts: list[list[int]], batch_size: int, cache_kw: str, device,
                   batch_tokens: int | None = None) -> list[list[float]]:
    """Token log-probs of each continuation after the item's context: token 0 from
    ``first_logp``, token j from the batched forward's position j-1 (the cache repeated over the
    batch's rows), in batches of similar lengths (``length_chunks``; with ``batch_tokens``, each
    batch's rows x its longest continuation within that budget). Empty continuations get no
    values."""
    vals: list[list[float]] = [[] for _ in conts]
    nonempty = [i for i, c in enumerate(conts) if c]
    for chunk in length_chunks([len(conts[i]) for i in nonempty], batch_size, batch_tokens):
        chunk = [nonempty[j] for j in chunk]
        width = max(len(conts[i]) for i in chunk)
        logp = None
        if width > 1:
            ids, mask = pad_batch([conts[i] for i in chunk])
            att = torch.cat([torch.ones((len(chunk), ctx_len), dtype=torch.long), mask], dim=1)
            logits = model(input_ids=ids.to(device), attention_mask=att.to(device),
                           use_cache=True, **{cache_kw: copy_cache(item_cache, len(chunk))}).logits
            logp = F.log_softmax(logits.float(), dim=-1)
        firsts = first_logp[torch.tensor([conts[i][0] for i in chunk], device=first_logp.device)]
        rest = None
        if logp is not None:  # token j of row r: position j-1 of the batch, one gather on device
            rest = logp[:, :-1].gather(-1, ids[:, 1:].to(logp.device).unsqueeze(-1)).squeeze(-1)
        firsts, rest = firsts.tolist(), (rest.tolist() if rest is not None else None)
        for r, i in enumerate(chunk):
            n = len(conts[i])
            vals[i] = [firsts[r]] + (rest[r][:n - 1] if rest is not None else [])
    return vals

