"""Extraction: SAE features of every query token, as a Parquet shard plus per-dimension sums.

One call handles one (model, layer, corpus, mode). The prefix shared by every query (the chat
head in plain mode; head + demonstrations in ICL mode) is run once and its key/value cache reused
for every batch of queries, and the forward pass stops after the hooked layer.

When a reference shard is given (the plain run of the same corpus), each token's features are
paired with the reference features of the same (doc_id, pos): the query token ids must match, and
the job also accumulates sum and sum of squares of (h - h_ref) per dimension, which is all the
shift vector and STS_icl need.

Storage contract (written by ``features.shards``), one row per query token:
    doc_id int32, pos int32, token_id int32, feat_idx list<int32> (sorted), feat_val list<float16|32>,
    counted bool
Every token of the query turn is stored; ``counted`` marks the tokens that enter the statistics
(``sts.query_tokens``: only the user's text, ``content``, or the whole turn with its chat-template
scaffolding, ``turn``). Statistics, shifts and scores use counted tokens only.

Where the residual comes from: a forward pass (``extract``: the layer's own SAE, which can keep
the residual of every query token for a sweep, ``features.residuals``), or those kept residuals
(``encode_cached``: a sweep SAE of the same layer, no model run). Both go through one loop.

Which queries (``features.queries.select_queries``): the corpus in a seeded random order
(``sts.sample_seed``; real benchmark files are ordered by source, so a prefix would be a biased
sample), whole queries until the token budget of counted tokens is reached; the selection does
not depend on the mode, so plain and ICL runs of a corpus see the same queries.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch

from stsflow.features.queries import _counted
from stsflow.features.shards import (
    FEAT_DTYPES,
    _json,
    _to_table,
    read_shard,
    sae_dtype,
    sae_width,
    shard_schema,
)
from stsflow.features.stats import Stats
from stsflow.io.files import atomic_path, write_parquet
from stsflow.models.batching import pad_batch, token_batches
from stsflow.models.cache import cache_kwarg, copy_cache, prefix_cache
from stsflow.models.tap import LayerTap
from stsflow.progress import Progress


class Reference:
    """Features of a finished shard, looked up by (doc_id, pos)."""

    def __init__(self, path: Path | str, width: int):
        self.doc, self.pos, self.tok, self.csr = read_shard(path, width)
        starts = np.flatnonzero(np.r_[True, self.doc[1:] != self.doc[:-1]])
        self.row_of = {int(self.doc[s]): int(s) for s in starts}

    def rows(self, doc_id: int, n: int) -> np.ndarray:
        if doc_id not in self.row_of:
            raise ValueError(f"document {doc_id} is not in the reference shard")
        start = self.row_of[doc_id]
        return np.arange(start, start + n)


class ForwardSource:
    """Residuals from the model: the shared prefix runs once and its key/value cache is reused for
    every batch; the forward pass stops after the hooked layer."""

    def __init__(self, model, layer: int, prefix: list[int]):
        self.model, self.prefix = model, list(prefix)
        self.device = next(model.parameters()).device
        self.tap = LayerTap(model, layer)
        self.cache = prefix_cache(model, self.prefix, self.tap)

    def prefix_resid(self) -> torch.Tensor:
        return self.tap.run(self.model, input_ids=torch.tensor([self.prefix],
                                                               device=self.device))[0]

    def run(self, batch):
        """(resid (B, T, d), mask, ids) of right-padded queries after the shared prefix."""
        ids, mask = pad_batch([q for _, q, _ in batch])
        width_t = ids.shape[1]
        ids, mask = ids.to(self.device), mask.to(self.device)
        p = len(self.prefix)
        inputs = {"input_ids": ids}
        if self.cache is not None:
            n = len(batch)
            inputs[cache_kwarg(self.model)] = copy_cache(self.cache, n)
            inputs["attention_mask"] = torch.cat(
                [torch.ones(n, p, dtype=mask.dtype, device=self.device), mask], dim=1)
            inputs["position_ids"] = torch.arange(p, p + width_t,
                                                  device=self.device).expand(n, -1)
        else:
            inputs["attention_mask"] = mask
        return self.tap.run(self.model, **inputs), mask, ids


@torch.no_grad()
def extract(model, sae, layer: int, queries: list[tuple[int, list[int]]], prefix: list[int],
            out_path: Path | str, stats_path: Path | str, *, resid_out: Path | str | None = None,
            **kwargs) -> Stats:
    """Run ``prefix + query`` for every query, encode the layer's residual stream with the SAE,
    and write the shard and its statistics. Returns the statistics. ``resid_out`` keeps the
    residual of every query token for a sweep's other SAEs (``features.residuals``). Keyword
    arguments: those of ``encode``."""
    source = ForwardSource(model, layer, prefix)
    queries = [(q[0], list(q[1]), _counted(q)) for q in queries]
    return encode(source, sae, layer, queries, len(prefix), out_path, stats_path,
                  resid_out=resid_out, **kwargs)


@torch.no_grad()
def encode_cached(sae, cache_dir: Path | str, out_path: Path | str, stats_path: Path | str, *,
                  device="cpu", metadata: dict | None = None, **kwargs) -> Stats:
    """A sweep SAE: encode the residuals another SAE's extraction of the same layer kept
    (``cache_dir``, a ``<mode>.resid/``), with the same queries, pairing and outputs as a forward
    pass. ``metadata`` is added to the kept run's (its model, selection, demonstrations, ...)."""
    from stsflow.features.residuals import CachedSource

    source = CachedSource(cache_dir, device)
    meta = {k: v for k, v in source.meta.items()
            if k not in ("width", "feat_dtype", "n_queries", "n_query_tokens", "n_tokens",
                         "prefix_tokens", "layer", "sae")}
    return encode(source, sae, int(source.meta["layer"]), source.queries,
                  int(source.meta["prefix_tokens"]), out_path, stats_path,
                  metadata=dict(meta, **(metadata or {}), residuals="kept"), **kwargs)


@torch.no_grad()
def encode(source, sae, layer: int, queries: list[tuple[int, list[int], list[bool]]],
           n_prefix: int, out_path: Path | str, stats_path: Path | str, *, batch_size: int = 16,
           batch_tokens: int | None = None,
           feat_dtype: str = "float16", reference: Path | str | None = None,
           metadata: dict | None = None, row_group_rows: int = 65536, log=print,
           panel=None, panel_out: Path | str | None = None,
           resid_out: Path | str | None = None) -> Stats:
    """The one loop: residuals of ``source`` (``ForwardSource`` or ``residuals.CachedSource``)
    batch by batch, encoded with the SAE into the shard, its statistics (with differences
    against ``reference``, the plain run's shard of the same SAE, for paired runs), the panel
    (``features.panel_gather.PanelAccumulator``, written to ``panel_out``) and, from a forward
    pass, the kept residuals (``resid_out``)."""
    import contextlib

    from stsflow.features.residuals import ResidualWriter
    from stsflow.io.files import atomic_dir

    device = source.device
    tdtype, _, np_dtype = FEAT_DTYPES[feat_dtype]
    width = sae_width(sae)
    prefix_resid = None
    if (panel is not None and panel.keep_prefix) and n_prefix:  # the authors' unaligned rows
        prefix_resid = source.prefix_resid()
        panel.set_prefix(sae.encode(prefix_resid.to(sae_dtype(sae))).to(tdtype).float())
    ref = Reference(reference, width) if reference is not None else None
    stats = Stats(width)
    sums = [torch.zeros(width, dtype=torch.float64, device=device) for _ in range(3)]
    dsums = [torch.zeros(width, dtype=torch.float64, device=device) for _ in range(2)]
    n_total = sum(len(ids) for _, ids, _ in queries)
    n_counted = sum(sum(c) for _, _, c in queries)
    meta = dict(metadata or {}, width=width, layer=layer, feat_dtype=feat_dtype,
                prefix_tokens=n_prefix, n_queries=len(queries), n_query_tokens=n_total,
                n_tokens=n_counted)
    schema = shard_schema(feat_dtype)
    schema = schema.with_metadata({f"stsflow.{k}".encode(): _json(v) for k, v in meta.items()})
    # Longest queries first keeps padding low (with batch_tokens, each batch's rows x its
    # longest query within that budget); rows are written back in query order per batch.
    batches = token_batches([len(ids) for _, ids, _ in queries], batch_size, batch_tokens)
    start, n_used = time.time(), 0
    progress = Progress(f"extract L{layer}", n_total, "tokens", log=log)
    with contextlib.ExitStack() as stack:
        tmp = stack.enter_context(atomic_path(out_path))
        kept = None
        if resid_out is not None:
            d = int(getattr(source.model.config, "hidden_size"))
            kept = ResidualWriter(stack.enter_context(atomic_dir(resid_out)), d, np_dtype)
        writer = pq.ParquetWriter(tmp, schema, compression="zstd")
        pending: list[pa.Table] = []
        pending_rows = 0
        for idx in batches:
            batch = [queries[i] for i in sorted(idx)]
            resid, mask, ids = source.run(batch)
            # The SAE sees the residual as the source gives it; the panel and the kept
            # residuals use it rounded to the stored dtype (their statistics must use what a
            # plain run stores as their reference).
            feats = sae.encode(resid.to(sae_dtype(sae)))
            rounded = resid.to(tdtype).float() if (panel is not None or kept) else None
            if kept is not None:
                kept.add(batch, ids, mask, rounded)
            feats = feats.to(tdtype).float()  # stats use exactly the stored values
            m = mask.bool()
            flat = feats[m]  # (tokens, width), rows in (query, pos) order
            counted = torch.from_numpy(np.concatenate(
                [np.asarray(c, dtype=bool) for _, _, c in batch])).to(device)
            used = flat[counted]
            if panel is not None:
                panel.update(batch, rounded[m][counted], used)
            sums[0] += used.sum(0, dtype=torch.float64)
            sums[1] += (used.double() ** 2).sum(0)
            sums[2] += (used != 0).sum(0).double()
            if ref is not None:
                ref_flat = _reference_rows(ref, batch, ids, mask)
                diff = (used.double()
                        - torch.from_numpy(ref_flat).to(device).double()[counted])
                dsums[0] += diff.sum(0)
                dsums[1] += (diff ** 2).sum(0)
            table = _to_table(batch, ids, mask, flat, schema)
            pending.append(table)
            pending_rows += table.num_rows
            if pending_rows >= row_group_rows:
                writer.write_table(pa.concat_tables(pending), row_group_size=row_group_rows)
                pending, pending_rows = [], 0
            n_used += int(counted.sum())
            progress.update(int(m.sum()))
        if pending:
            writer.write_table(pa.concat_tables(pending), row_group_size=row_group_rows)
        writer.close()
        if kept is not None:
            if prefix_resid is None and panel is not None and panel.keep_prefix:
                prefix_resid = torch.zeros(0, kept.d)
            kept.close(getattr(source, "prefix", []),
                       None if prefix_resid is None else prefix_resid.to(tdtype), meta)
    stats.n_tokens = n_used
    stats.sum, stats.sumsq, stats.nnz = (s.cpu().numpy() for s in sums)
    if ref is not None:
        stats.diff_sum, stats.diff_sumsq = (s.cpu().numpy() for s in dsums)
    write_parquet(stats.table(), stats_path, dict(meta, n_tokens=n_used,
                                                  seconds=round(time.time() - start, 2)))
    if panel is not None:
        panel.write(panel_out, meta)
    return stats


def _reference_rows(ref: Reference, batch, ids, mask) -> np.ndarray:
    rows = []
    for r, (doc_id, q, _) in enumerate(batch):
        rr = ref.rows(doc_id, len(q))
        if not np.array_equal(ref.tok[rr], np.asarray(q)) or not np.array_equal(
                ref.pos[rr], np.arange(len(q))):
            raise ValueError(f"document {doc_id}: query tokens differ from the reference run; "
                             "the ICL and plain inputs are not aligned")
        rows.append(rr)
    return ref.csr[np.concatenate(rows)].toarray()
