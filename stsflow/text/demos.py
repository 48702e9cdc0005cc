"""The demonstrations in front of the queries: which t SFT examples a seed draws (and so leaves
out of the queries), and the token prefix of each extraction mode."""

from __future__ import annotations

import random

from stsflow.data import corpora


def sft_demo_indices(n_records: int, t: int, seed: int) -> list[int]:
    """The t demonstrations of an SFT set for a seed (excluded from the ICL queries)."""
    return sorted(random.Random(seed).sample(range(n_records), t))


def demonstration_context(seg, mode, kind: str, records: list[dict], data: dict,
                          n_demos: int):
    """``(prefix ids, demonstration ids, excluded query indices)`` of an extraction mode: the
    chat head alone (plain, tuned), head + the domain's first ``n_demos`` (sts.m) worked
    examples, or head + ``n_demos`` (sts.t) SFT
    demonstrations drawn with the mode's seed (which then leave the queries). The tuned model of
    seed s runs on the queries of icl-s<s> (its t demonstrations left out too), so the true and
    the predicted shift of a seed average over the same tokens."""
    if mode.demonstrations == "none":
        excluded = (set(sft_demo_indices(len(records), n_demos, mode.seed))
                    if mode.tuned_model else set())
        return seg.head(), [], excluded
    if mode.demonstrations == "domain":
        demos = corpora.read_records(data["demos"])[: n_demos]
        return seg.context(demos, kind), [d["question_id"] for d in demos], set()
    idx = sft_demo_indices(len(records), n_demos, mode.seed)
    return (seg.context([records[i] for i in idx], kind), [records[i]["id"] for i in idx],
            set(idx))
