"""A data-mixture run's training records: the replay items its strategy allocates to each domain
(``stsflow.mixture.allocate``), drawn reproducibly from each domain's replay.

``allocation`` is the split alone (the counts per domain and what they were weighed by): the
workflow's ``allocation`` job writes it before any fine-tuning, so that runs with the same
counts (the same training data: stsflow.mixture.identical) train once; ``mixture_records``
draws the items of that same split for the run that trains. Both read the run's files through
one function, so the counts the workflow groups by are the counts the run trains on."""

from __future__ import annotations

import logging
import zlib

import numpy as np
import polars as pl

from stsflow.data import corpora
from stsflow.io.files import read_frame
from stsflow.mixture.allocate import allocate, weights
from stsflow.mixture.runs import PAPER_RULE, MixRun

log = logging.getLogger("stsflow")


def allocation(mix: dict, name: str, files) -> tuple[dict, dict]:
    """(each domain's replay records the run may draw from, the allocation): the weight of each
    domain under the run's strategy (and, for sts, its allocation rule: ``name`` is the
    ``<name>`` of ``-mix_<name>``, stsflow.mixture.runs), and the budget split by it.
    ``mix``: the run's ``mixture`` recipe (stsflow.workflow.params.mixture_recipe); ``files``:
    its inputs (stsflow.workflow.bundles.FinetuneFiles): each domain's replay, and its score
    (sts, every rule) or its base and plain run's evaluations (oracle). The allocation:
    ``strategy``, ``weights``, ``counts``, ``n_short``, ``available``, ``values`` (the scores or
    |Δ|), and for sts the ``allocation`` rule (and softmax's ``temperature``)."""
    run = MixRun.parse(name)
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
    info = {"strategy": strategy, "weights": w, "counts": counts, "n_short": short,
            "available": {d: len(r) for d, r in replay_rows.items()},
            "values": scores if scores is not None else abs_delta}
    if run.allocation is not None:  # the sts strategy's rule (the report names it)
        info["allocation"] = run.allocation
        if run.allocation == "softmax":
            info["temperature"] = mix["temperature"]
    return replay_rows, info


def mixture_records(recipe, files) -> tuple[list[dict], dict]:
    """A data-mixture run's replay records and its ``allocation``: that many of each domain's
    replay records, drawn with ``numpy.random.default_rng([seed, crc32(domain)])``."""
    run = MixRun.parse(recipe.run.mix)
    replay_rows, info = allocation(recipe.mixture, str(run), files)
    counts, short = info["counts"], info["n_short"]
    chosen = []
    for d in recipe.mixture["domains"]:
        order = np.random.default_rng([recipe.seed, zlib.crc32(d.encode())]).permutation(
            len(replay_rows[d]))
        chosen += [dict(replay_rows[d][i], domain=d) for i in order[:counts[d]]]
    log.info(f"mixture {run}: {sum(counts.values())} replay items "
             + ", ".join(f"{d} {n}" for d, n in counts.items() if n) + (f" ({short} short)"
                                                                        if short else ""))
    return chosen, info
