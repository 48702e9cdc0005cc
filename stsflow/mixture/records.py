"""A data-mixture run's training records: the replay items its strategy allocates to each domain
(``stsflow.mixture.allocate``), drawn reproducibly from each domain's replay."""

from __future__ import annotations

import logging
import zlib

import numpy as np
import polars as pl

from stsflow.data import corpora
from stsflow.io.files import read_frame
from stsflow.mixture.allocate import allocate, weights

log = logging.getLogger("stsflow")


def mixture_records(recipe, files) -> tuple[list[dict], dict]:
    """A data-mixture run's replay records (``allocate``): each domain's weight under the run's
    strategy (and, for sts, its allocation rule: ``stsflow.mixture.runs``), the budget split by
    it, and that many of the domain's replay records drawn with
    ``numpy.random.default_rng([seed, crc32(domain)])``. ``files``: the run's inputs
    (stsflow.workflow.bundles.FinetuneFiles): each domain's replay, and its score (sts, every
    rule) or its base and plain run's evaluations (oracle)."""
    from stsflow.mixture.runs import PAPER_RULE, MixRun

    mix, run = recipe.mixture, MixRun.parse(recipe.run.mix)
    strategy = run.strategy
    domains = list(mix["domains"])
    # an answer cut at max_new_tokens is not trained on unless mixture.keep_cut: the end of turn
    # appended to it would teach the model to stop mid-answer
    replay_rows = {d: [r for r in corpora.read_records(files.replay[d])
                       if mix.get("keep_cut") or r.get("finish", "eos") == "eos"]
                   for d in domains}
    scores = abs_delta = None
    if strategy == "sts":
        scores = {d: read_frame(files.scores[d])[mix["predictor"]][0] for d in domains}
        scores = {d: float("nan") if v is None else float(v) for d, v in scores.items()}
    if strategy == "oracle":
        def mean(path):
            df = read_frame(path).filter(pl.col("metric") == mix["metric"])
            return float(df["value"].mean())
        abs_delta = {d: abs(mean(files.eval_plain[d]) - mean(files.eval_base[d]))
                     for d in domains}
    w = weights(strategy, domains, scores=scores, abs_delta=abs_delta, top_k=mix.get("top_k"),
                allocation=run.allocation or PAPER_RULE, temperature=mix.get("temperature"))
    counts, short = allocate(w, mix["budget"], {d: len(r) for d, r in replay_rows.items()})
    chosen = []
    for d in domains:
        order = np.random.default_rng([recipe.seed, zlib.crc32(d.encode())]).permutation(
            len(replay_rows[d]))
        chosen += [dict(replay_rows[d][i], domain=d) for i in order[:counts[d]]]
    info = {"strategy": strategy, "weights": w, "counts": counts, "n_short": short,
            "available": {d: len(r) for d, r in replay_rows.items()},
            "values": scores if scores is not None else abs_delta}
    if run.allocation is not None:  # the sts strategy's rule (the report names it)
        info["allocation"] = run.allocation
        if run.allocation == "softmax":
            info["temperature"] = mix["temperature"]
    log.info(f"mixture {run}: {sum(counts.values())} replay items "
             + ", ".join(f"{d} {n}" for d, n in counts.items() if n) + (f" ({short} short)"
                                                                        if short else ""))
    return chosen, info
