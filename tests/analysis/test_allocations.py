"""Every mixture run's allocation from its history metadata, against hand computations: uniform's
split at the same budget and items (caps and shortfall included), the runs that trained on the
same data, and the report's section that says so. Torch-free."""

from __future__ import annotations

import polars as pl
import pytest

from stsflow.analysis.allocations import allocation_table, uniform_counts
from stsflow.report.allocations import allocation_blocks
from stsflow.report.render import to_markdown as _to_markdown

DOMS = ["business", "physics", "chemistry", "engineering"]
SCORES = dict(zip(DOMS, [195.0, 194.7, 197.6, 201.7]))


def history(strategy, counts, *, values=None, weights=None, available=60, n_short=0, **extra):
    """A history's metadata as the fine-tuning job writes it (jobs.validate.mixture_records)."""
    counts = dict(zip(DOMS, counts)) if not isinstance(counts, dict) else counts
    avail = available if isinstance(available, dict) else dict.fromkeys(counts, available)
    return {"n_trainable": 10, "mixture": {
        "strategy": strategy, "counts": counts, "n_short": n_short, "available": avail,
        "weights": weights or dict.fromkeys(counts, 1.0), "values": values, **extra}}


def runs():
    return {("lora", 0): {"n_trainable": 10},
            # a run finished before the rules existed: no "allocation" key, the paper's rule
            ("lora-mix_sts", 0): history("sts", [20, 20, 20, 20], values=SCORES,
                                         weights=SCORES),
            ("lora-mix_uniform", 0): history("uniform", [20, 20, 20, 20]),
            ("lora-mix_sts_rank", 0): history("sts", [16, 8, 24, 32], values=SCORES,
                                              weights=dict(zip(DOMS, [2.0, 1.0, 3.0, 4.0])),
                                              allocation="rank"),
            ("lora-mix_oracle", 0): history("oracle", [32, 36, 5, 7],
                                            values=dict(zip(DOMS, [0.4, 0.45, 0.06, 0.09]))),
            ("lora-mix_sts", 1): history("sts", [20, 20, 20, 20], values=SCORES,
                                         weights=SCORES),
            ("posthoc_vendor", 0): {"n_trainable": None}}


def test_each_runs_counts_beside_uniforms_and_the_runs_that_coincide():
    t = allocation_table(runs())
    assert t.height == 5 * 4  # the plain run and the post-hoc pair have no allocation rows
    per_run = {(r["method"], r["seed"]): r for r in t.unique(["method", "seed"],
                                                               maintain_order=True).to_dicts()}
    # uniform at R = 80 over four domains with 60 items each: 20 apiece
    assert set(t["uniform"]) == {20} and set(t["budget"]) == {80}
    assert {k: r["equals_uniform"] for k, r in per_run.items()} == {
        ("lora-mix_sts", 0): True, ("lora-mix_uniform", 0): True,
        ("lora-mix_sts_rank", 0): False, ("lora-mix_oracle", 0): False,
        ("lora-mix_sts", 1): True}
    # sts and uniform of seed 0 drew the same items: one run, uniform the one to train; seed 1
    # has no uniform run to coincide with
    assert {k: (r["same_data"], r["trains"]) for k, r in per_run.items()} == {
        ("lora-mix_sts", 0): ("lora-mix_uniform", "lora-mix_uniform"),
        ("lora-mix_uniform", 0): ("lora-mix_sts", "lora-mix_uniform"),
        ("lora-mix_sts_rank", 0): (None, "lora-mix_sts_rank"),
        ("lora-mix_oracle", 0): (None, "lora-mix_oracle"),
        ("lora-mix_sts", 1): (None, "lora-mix_sts")}
    assert {k: (r["strategy"], r["allocation"]) for k, r in per_run.items()} == {
        ("lora-mix_sts", 0): ("sts", "proportional"), ("lora-mix_uniform", 0): ("uniform", None),
        ("lora-mix_sts_rank", 0): ("sts", "rank"), ("lora-mix_oracle", 0): ("oracle", None),
        ("lora-mix_sts", 1): ("sts", "proportional")}
    rank = t.filter((pl.col("method") == "lora-mix_sts_rank") & (pl.col("domain") == "physics"))
    assert rank["share"][0] == pytest.approx(1 / 10) and rank["value"][0] == 194.7
    assert rank["count"][0] == 8


def test_uniform_at_the_runs_budget_respects_caps_and_shortfall():
    # 10 items, law has 3: uniform takes law's 3 and gives history the rest
    capped = history("oracle", {"law": 3, "history": 7}, available={"law": 3, "history": 100},
                     weights={"law": 0.9, "history": 0.1})["mixture"]
    assert uniform_counts(capped) == {"law": 3, "history": 7}
    # 10 asked, 7 items in all: 3 short, the budget is still 10
    short = history("sts", {"law": 3, "history": 4}, available={"law": 3, "history": 4},
                    n_short=3)["mixture"]
    assert uniform_counts(short) == {"law": 3, "history": 4}
    t = allocation_table({("full-mix_oracle", 0): {"mixture": capped},
                          ("full-mix_sts", 0): {"mixture": short}})
    assert dict(t.unique("method").select("method", "budget").iter_rows()) == {
        "full-mix_oracle": 10, "full-mix_sts": 10}
    # oracle's counts equal uniform's here only because of the cap: still said
    assert t.filter(pl.col("method") == "full-mix_oracle")["equals_uniform"].all()
    assert allocation_table({("lora", 0): {}}).height == 0


def test_the_report_section_shows_every_split_and_says_which_coincide():
    md = _to_markdown(allocation_blocks(allocation_table(runs())))
    assert "### Data-mixture allocations" in md
    assert ("| run | seed | rule | business | physics | chemistry | engineering | short | note |"
            in md)
    sts0 = next(line for line in md.splitlines() if line.startswith("| lora-mix_sts | 0 |"))
    assert "| 20 (195) | 20 (194.7) | 20 (197.6) | 20 (201.7) |" in sts0
    assert ("the uniform split; the same training data as lora-mix_uniform (one run, trained "
            "and evaluated once, as lora-mix_uniform)") in sts0
    uniform = next(line for line in md.splitlines() if line.startswith("| lora-mix_uniform |"))
    assert ("the same training data as lora-mix_sts (one run, trained and evaluated once, as "
            "this run)") in uniform
    rank = next(line for line in md.splitlines() if line.startswith("| lora-mix_sts_rank |"))
    assert "| rank | 16 (195) | 8 (194.7) | 24 (197.6) | 32 (201.7) | 0 | — |" in rank
    assert "Split as uniform splits: lora-mix_sts (seed 0), lora-mix_sts (seed 1)." in md
