"""Grouping the runs whose training data coincide (stsflow.mixture.identical): the same replay
items per domain, whatever the strategy's name, and a training run chosen by the names alone.
The records themselves are compared through the job in test_mixture.py. Torch-free."""

from __future__ import annotations

import itertools

import pytest

from stsflow.mixture.identical import TRAIN_ORDER, identical_runs


def test_runs_with_the_same_counts_form_one_group_whatever_the_order_given():
    counts = {"lora": {},
              "lora-mix_oracle": {"law": 20, "history": 20},
              "lora-mix_sts_rank": {"law": 30, "history": 10},
              "lora-mix_sts": {"law": 20, "history": 20},
              "lora-mix_uniform": {"history": 20, "law": 20},  # order of domains: irrelevant
              "lora-mix_sts_softmax": {"law": 30, "history": 10, "physics": 0}}  # 0: absent
    want = [("lora", ("lora",), {}),
            ("lora-mix_uniform", ("lora-mix_uniform", "lora-mix_sts", "lora-mix_oracle"),
             {"history": 20, "law": 20}),
            ("lora-mix_sts_softmax", ("lora-mix_sts_softmax", "lora-mix_sts_rank"),
             {"history": 10, "law": 30})]
    for order in itertools.permutations(counts):
        groups = identical_runs({run: counts[run] for run in order})
        assert [(g.trains, g.runs, g.counts) for g in groups] == want
    assert [g.shared for g in identical_runs(counts)] == [False, True, True]


def test_a_run_with_no_replay_item_is_the_plain_run():
    groups = identical_runs({"full-mix_sts": {"law": 0}, "full": {},
                             "full-mix_uniform": {"law": 4}})
    assert [(g.trains, g.runs) for g in groups] == [("full", ("full", "full-mix_sts")),
                                                  ("full-mix_uniform", ("full-mix_uniform",))]


def test_the_training_run_is_the_one_whose_allocation_needs_least():
    assert TRAIN_ORDER == ("none", "uniform", "sts", "sts_softmax", "sts_above_min", "sts_rank",
                           "oracle")
    same = {"x": 3}
    groups = identical_runs({"lora-mix_oracle": same, "lora-mix_sts_rank": same,
                             "lora-mix_sts": same})
    assert groups[0].trains == "lora-mix_sts"


def test_runs_of_different_methods_or_bad_counts_are_refused():
    with pytest.raises(ValueError, match="different methods"):
        identical_runs({"lora-mix_sts": {"a": 1}, "full-mix_uniform": {"a": 1}})
    with pytest.raises(ValueError, match="whole numbers"):
        identical_runs({"lora-mix_sts": {"a": 1.5}})
    with pytest.raises(ValueError, match="whole numbers"):
        identical_runs({"lora-mix_sts": {"a": -1}})
