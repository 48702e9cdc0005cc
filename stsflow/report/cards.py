"""Feature cards: what each top shifted SAE dimension is, read from the cached shards.

A card is one dimension of one shift vector (the ICL prediction of a seed, or the true shift of a
fine-tuning run): its rank and signed shift, the other shift vectors whose top N it is also in
(the overlap of predicted and true dimensions), its activation frequency and mean on each corpus,
its top-activating contexts in the SFT set and in each domain, the tokens its decoder direction
promotes and suppresses (``stsflow.report.lens``) and its Neuronpedia page when the SAE is hosted
there. Everything but the lens comes from the plain-query shards the extraction already wrote: no
forward pass. Torch-free; the job (``stsflow.jobs.cards``) adds the tokenizer and the lens.

Choices, stated once:

* frequency and mean are over the counted query tokens of a corpus (the tokens STS reads), the
  mean including the zeros; a context's maximum is also sought among counted tokens only, and
  its window shows the query's neighbouring tokens whatever they are (chat scaffolding too);
* ties in activation go to the lower document id, then the earlier position (reproducible);
* a dimension that never fires on a corpus has no context there, never a zero-activation one.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path

import numpy as np
import polars as pl

from stsflow.features.reader import read_shard
from stsflow.io.files import read_frame, read_table
from stsflow.mode import Shift

PREDICTED = "predicted"


def set_name(shift: str) -> str:
    """The card set of a shift vector's name (``s0`` → predicted, ``true-lora-s0`` → true-lora)."""
    s = Shift.parse(shift)
    return f"true-{s.method}" if s.true else PREDICTED


def card_dims(shifts: Mapping[str, pl.DataFrame], n_top: int) -> pl.DataFrame:
    """One row per (set, dim) of D_N of each shift table (columns dim, shift, mean_diff, rank;
    rank 1 = largest shift): set, dim, rank, shift, mean_diff, and ``also_in``, the other sets
    whose D_N holds the same dimension. D_N as ``scores.shift.shifted_dims`` defines it: only
    dimensions that moved, never a zero shift or a tie at the cut taken by index order."""
    at_least = pl.col("shift").rank(method="max", descending=True)  # dims with a shift >= this
    tops = {name: t.filter((pl.col("shift") > 0) & (at_least <= n_top)).sort("rank")
            for name, t in shifts.items()}
    members = {name: set(t["dim"].to_list()) for name, t in tops.items()}
    rows = []
    for name, t in tops.items():
        for r in t.iter_rows(named=True):
            rows.append({"set": name, "dim": int(r["dim"]), "rank": int(r["rank"]),
                         "shift": float(r["shift"]), "mean_diff": float(r["mean_diff"]),
                         "also_in": [o for o in tops if o != name and r["dim"] in members[o]]})
    return pl.DataFrame(rows, schema={"set": pl.String, "dim": pl.Int32, "rank": pl.Int32,
                                      "shift": pl.Float64, "mean_diff": pl.Float64,
                                      "also_in": pl.List(pl.String)})


def scan_corpus(path: Path | str, dims: np.ndarray, *, contexts: int, window: int) -> tuple:
    """(stats, contexts) of the dimensions ``dims`` on one shard.

    stats: dim → (counted tokens, frequency, mean, max) over the counted tokens;
    contexts: dim → up to ``contexts`` tuples (activation, doc_id, pos, token ids of the window
    before, the token id, token ids after), largest activation first."""
    doc, pos, tok, csr = read_shard(path)
    counted = read_table(path, columns=["counted"])["counted"].to_numpy(zero_copy_only=False)
    sub = csr[:, dims].toarray().astype(np.float64) if len(dims) else np.zeros((len(doc), 0))
    n = int(counted.sum())
    # windows: rows sorted by (doc, pos), one searchsorted per side
    key = doc.astype(np.int64) * (1 << 32) + pos.astype(np.int64)
    order = np.argsort(key, kind="stable")
    skey, stok = key[order], tok[order]
    stats, ctx = {}, {}
    for j, d in enumerate(dims):
        a = sub[:, j]
        ac = a[counted]
        stats[int(d)] = (n, float((ac != 0).mean()) if n else float("nan"),
                         float(ac.mean()) if n else float("nan"),
                         float(ac.max()) if n else float("nan"))
        cand = np.flatnonzero(counted & (a != 0))
        best = cand[np.lexsort((pos[cand], doc[cand], -a[cand]))][:contexts]
        found = []
        for i in best:
            base = int(doc[i]) * (1 << 32)
            lo = np.searchsorted(skey, base + max(int(pos[i]) - window, 0))
            mid = np.searchsorted(skey, base + int(pos[i]))
            hi = np.searchsorted(skey, base + int(pos[i]) + window + 1)
            found.append((float(a[i]), int(doc[i]), int(pos[i]), stok[lo:mid].tolist(),
                          int(tok[i]), stok[mid + 1:hi].tolist()))
        ctx[int(d)] = found
    return stats, ctx


CORPUS_STATS = pl.Struct({"corpus": pl.String, "kind": pl.String, "tokens": pl.Int64,
                          "frequency": pl.Float64, "mean": pl.Float64, "max": pl.Float64})
CONTEXT = pl.Struct({"corpus": pl.String, "kind": pl.String, "activation": pl.Float64,
                     "doc_id": pl.Int32, "pos": pl.Int32, "token_id": pl.Int32,
                     "before": pl.String, "token": pl.String, "after": pl.String})
LENS = pl.List(pl.Struct({"token": pl.String, "logit": pl.Float64}))


def build_cards(shifts: Mapping[str, pl.DataFrame], shards: Mapping[tuple[str, str], Path | str],
                *, n_top: int, contexts: int, window: int,
                decode: Callable[[list[int]], str],
                lens: Callable[[np.ndarray], tuple[list, list]] | None = None,
                neuronpedia: str | None = None, keys: Mapping | None = None) -> pl.DataFrame:
    """The cards table: one row per (set, dim) of ``card_dims`` with ``corpora`` (a stats struct
    per corpus), ``contexts`` (decoded windows, the active token apart), ``promotes`` and
    ``suppresses`` (``lens(dims)`` → two lists of [(token, logit)] per dim) and ``neuronpedia``
    (the SAE's page prefix + '/<dim>'). ``shards`` maps (kind, corpus) → plain-query shard, the
    SFT set first; ``keys`` (model, layer, sae, sft, seed) lead every row."""
    cards = card_dims(shifts, n_top)
    dims = np.array(sorted(set(cards["dim"].to_list())), dtype=np.int64)
    per_dim_stats: dict[int, list] = {int(d): [] for d in dims}
    per_dim_ctx: dict[int, list] = {int(d): [] for d in dims}
    for (kind, corpus), path in shards.items():
        stats, ctx = scan_corpus(path, dims, contexts=contexts, window=window)
        for d in dims:
            n, freq, mean, mx = stats[int(d)]
            per_dim_stats[int(d)].append({"corpus": corpus, "kind": kind, "tokens": n,
                                          "frequency": freq, "mean": mean, "max": mx})
            for act, doc, p, before, t, after in ctx[int(d)]:
                per_dim_ctx[int(d)].append({
                    "corpus": corpus, "kind": kind, "activation": act, "doc_id": doc, "pos": p,
                    "token_id": t, "before": decode(before), "token": decode([t]),
                    "after": decode(after)})
    promotes, suppresses = lens(dims) if lens is not None and len(dims) else ([], [])
    lens_of = {int(d): (promotes[i], suppresses[i]) for i, d in enumerate(dims)} if promotes \
        else {}
    col = cards["dim"].to_list()
    out = cards.with_columns(
        pl.Series("corpora", [per_dim_stats[d] for d in col], dtype=pl.List(CORPUS_STATS)),
        pl.Series("contexts", [per_dim_ctx[d] for d in col], dtype=pl.List(CONTEXT)),
        pl.Series("promotes", [_lens_rows(lens_of, d, 0) for d in col], dtype=LENS),
        pl.Series("suppresses", [_lens_rows(lens_of, d, 1) for d in col], dtype=LENS),
        pl.Series("neuronpedia", [f"{neuronpedia}/{d}" if neuronpedia else None for d in col],
                  dtype=pl.String))
    if keys:
        out = out.select([pl.lit(v).alias(k) for k, v in keys.items()] + out.columns)
    return out


def _lens_rows(lens_of: dict, d: int, side: int) -> list[dict] | None:
    if d not in lens_of:
        return None
    return [{"token": t, "logit": float(v)} for t, v in lens_of[d][side]]


def neuronpedia_base(info: Mapping) -> str | None:
    """The Neuronpedia address of a prepared SAE's features (``.../<dim>`` is one feature's page),
    from the sae-lens registry's ``neuronpedia_id``; None for an SAE that is not a registry
    release hosted there (trained here, a hub or local folder)."""
    if info.get("kind") != "registry":
        return None
    from sae_lens.loading.pretrained_saes_directory import get_pretrained_saes_directory

    lookup = get_pretrained_saes_directory().get(info.get("release"))
    np_id = (lookup.neuronpedia_id or {}).get(info.get("sae_id")) if lookup else None
    return f"https://www.neuronpedia.org/{np_id}" if np_id else None


def load_cards(results: Path | str, **match) -> pl.DataFrame:
    """Every cards table under ``<results>/cards``, stacked, keeping the rows whose columns equal
    the given values (model, sft, layer, sae, seed, set, dim; None: any)."""
    paths = sorted(Path(results, "cards").rglob("*.parquet"))
    if not paths:
        raise FileNotFoundError(f"no feature cards under {Path(results, 'cards')}: run the "
                                "workflow first (the report rule builds them)")
    cards = pl.concat([read_frame(p) for p in paths], how="diagonal_relaxed")
    for k, v in match.items():
        if v is not None:
            cards = cards.filter(pl.col(k) == v)
    return cards
