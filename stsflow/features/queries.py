"""The queries of a corpus and their counted tokens: seeded selection under a token budget, with
queries cut to the model's max_length recorded as such."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from stsflow.config.settings import ExtractSettings


def _counted(query) -> list[bool]:
    """The counted-token mask of a query ``(doc_id, ids)`` or ``(doc_id, ids, counted)``."""
    return list(query[2]) if len(query) > 2 else [True] * len(query[1])


def select_queries(queries: list[tuple], budget: int, max_len: int, seed: int | None = 0
                   ) -> tuple[list[tuple[int, list[int], list[bool]]], dict]:
    """Whole queries until ``budget`` counted tokens, visited in a seeded random order (``seed``
    None: corpus order); each truncated to ``max_len`` tokens. Returns the selection in corpus
    order as ``(doc_id, ids, counted)`` and a summary (queries available, selected, truncated)."""
    order = (np.arange(len(queries)) if seed is None
             else np.random.default_rng(seed).permutation(len(queries)))
    chosen, total, truncated = [], 0, 0
    for i in order:
        if total >= budget:
            break
        q = queries[int(i)]
        ids, counted = list(q[1]), _counted(q)
        truncated += len(ids) > max_len
        chosen.append((int(i), (q[0], ids[:max_len], counted[:max_len])))
        total += sum(counted[:max_len])
    out = [q for _, q in sorted(chosen, key=lambda c: c[0])]
    return out, {"n_available": len(queries), "n_selected": len(out), "n_truncated": truncated,
                 "sample_seed": seed, "max_query_tokens": max_len}


def build_queries(seg, records: list[dict], settings: ExtractSettings, max_len: int):
    """The queries of a corpus as ``(doc_id, ids, counted)``, sampled per ``settings`` (token
    budget, ``sample_seed``, ``query_tokens``), and the selection summary (see select_queries)."""
    kind = settings.kind
    content = settings.query_tokens == "content"
    queries = []
    for i, rec in enumerate(records):
        if content:
            ids, counted = seg.query_parts(rec, kind)
        else:
            ids = seg.query(rec, kind)
            counted = [True] * len(ids)
        queries.append((i, ids, counted))
    return select_queries(queries, settings.tokens, max_len, settings.sample_seed)
