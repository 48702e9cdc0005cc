"""The sts strategy's allocation rules against independent computations (scipy, float64): the
paper's proportional rule collapses to uniform on scores with a large common offset, the
contrast rules do not; equal scores give equal shares; what each rule is invariant to; the run
names, the config's runs and the registry against the schema. Torch-free."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest
import yaml
from scipy import special, stats

from stsflow.mixture.allocate import ALLOCATIONS, allocate, weights
from stsflow.mixture.runs import (
    MIX_NAMES,
    PAPER_RULE,
    STS_ALLOCATIONS,
    MixRun,
    all_names,
    allocation_params,
    mix_names,
)
from stsflow.mode import (
    Mode,
    RunMethod,
    Shift,
    mixture_runs,
    mode_pattern,
    trained_method_pattern,
)

MODE_PATTERN, TRAINED_METHOD_PATTERN = mode_pattern(), trained_method_pattern()
FULL_METHOD_PATTERN = trained_method_pattern(shards_only=True)

# the four pool domains' sts_icl on the embedded default (layer 12, N = 100), the numbers whose
# proportional shares round to the uniform split
DEFAULT = {"business": 195.0, "physics": 194.7, "chemistry": 197.6, "engineering": 201.7}
CONTRAST = [a for a in STS_ALLOCATIONS if a != PAPER_RULE]
ROOM = 10_000  # no domain capped


def reference_weights(rule: str, s: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """Each rule written with scipy: standardised scores (ddof 0) through a softmax, the score
    above the minimum, the average rank."""
    if rule == "proportional":
        return np.clip(s, 0, None)
    if rule == "softmax":
        z = stats.zscore(s) if s.std() > 0 else np.zeros_like(s)
        return special.softmax(z / temperature)
    if rule == "above_min":
        return s - s.min() if s.max() > s.min() else np.ones_like(s)
    return stats.rankdata(s, method="average")


def reference_counts(w: np.ndarray, names: list[str], total: int) -> dict[str, int]:
    """Largest remainder: floors of the exact shares, the rest one each to the largest
    remainders (ties by name)."""
    exact = total * w / w.sum()
    counts = np.floor(exact).astype(int)
    order = sorted(range(len(names)), key=lambda i: (-(exact[i] - counts[i]), names[i]))
    for i in order[:total - counts.sum()]:
        counts[i] += 1
    return dict(zip(names, counts.tolist()))


def split(rule: str, scores: dict, total: int = 80, temperature: float = 1.0, **kw) -> dict:
    w = weights("sts", list(scores), scores=scores, allocation=rule, temperature=temperature,
                **kw)
    counts, short = allocate(w, total, dict.fromkeys(scores, ROOM))
    assert short == 0
    return counts


def test_the_papers_rule_rounds_the_defaults_scores_to_uniform_and_contrast_rules_do_not():
    names, s = list(DEFAULT), np.array(list(DEFAULT.values()))
    assert split("proportional", DEFAULT) == dict.fromkeys(DEFAULT, 20)  # the finding
    for rule in CONTRAST:
        got = split(rule, DEFAULT)
        assert got == reference_counts(reference_weights(rule, s), names, 80), rule
        assert got != dict.fromkeys(DEFAULT, 20) and sum(got.values()) == 80, rule
        # more items where the score is higher: the ordering of the scores is kept
        assert [got[d] for d in sorted(names, key=DEFAULT.get)] == sorted(got.values()), rule
    # by hand: ranks 2, 1, 3, 4 of 10 -> 16, 8, 24, 32; above the minimum 0.3, 0, 2.9, 7.0 of
    # 10.2 -> 2.35, 0, 22.75, 54.90 -> floors 2, 0, 22, 54 and the two largest remainders
    assert split("rank", DEFAULT) == {"business": 16, "physics": 8, "chemistry": 24,
                                      "engineering": 32}
    assert split("above_min", DEFAULT) == {"business": 2, "physics": 0, "chemistry": 23,
                                           "engineering": 55}


@pytest.mark.parametrize("rule", STS_ALLOCATIONS)
@pytest.mark.parametrize("value", [201.7, 0.25, -3.0])
def test_equal_scores_give_equal_shares(rule, value):
    scores = dict.fromkeys(["a", "b", "c", "d", "e"], value)
    assert split(rule, scores, total=10) == dict.fromkeys(scores, 2)
    w = weights("sts", list(scores), scores=scores, allocation=rule, temperature=0.5)
    assert len(set(w.values())) == 1 and min(w.values()) > 0


@pytest.mark.parametrize("rule", CONTRAST)
def test_contrast_rules_ignore_a_common_offset_and_scale(rule):
    """s -> a·s + b (a > 0) leaves the weights' shares and the counts as they were; for rank any
    strictly increasing map does."""
    rng = np.random.default_rng(7)
    for _ in range(20):
        n = int(rng.integers(2, 8))
        names = [f"d{i}" for i in range(n)]
        base = dict(zip(names, rng.normal(50, 3, n).tolist()))
        want_counts = split(rule, base, total=97, temperature=0.7)
        want = reference_weights(rule, np.array(list(base.values())), 0.7)
        for a, b in ((1.0, 1e4), (1.0, -123.4), (0.01, 0.0), (250.0, -7.0)):
            moved = {d: a * v + b for d, v in base.items()}
            w = weights("sts", names, scores=moved, allocation=rule, temperature=0.7)
            got = np.array([w[d] for d in names])
            np.testing.assert_allclose(got / got.sum(), want / want.sum(), rtol=1e-9)
            assert split(rule, moved, total=97, temperature=0.7) == want_counts
        if rule == "rank":
            assert split(rule, {d: math.exp(v / 10) ** 3 for d, v in base.items()},
                         total=97) == want_counts


def test_the_papers_rule_keeps_scale_but_not_offset():
    """Proportional: a·s (a > 0) gives the same split; s + b does not (the reason for the
    contrast rules)."""
    assert split("proportional", {d: 3 * v for d, v in DEFAULT.items()}) == dict.fromkeys(
        DEFAULT, 20)
    shifted = {d: v - 194.0 for d, v in DEFAULT.items()}  # 1.0, 0.7, 3.6, 7.7 of 13.0
    assert split("proportional", shifted) == reference_counts(
        np.array(list(shifted.values())), list(shifted), 80) == {
        "business": 6, "physics": 4, "chemistry": 22, "engineering": 48}


def test_the_temperature_moves_softmax_between_uniform_and_the_top_domain():
    names, s = list(DEFAULT), np.array(list(DEFAULT.values()))
    for t in (0.3, 1.0, 2.5):
        assert split("softmax", DEFAULT, temperature=t) == reference_counts(
            reference_weights("softmax", s, t), names, 80)
    assert split("softmax", DEFAULT, temperature=1e6) == dict.fromkeys(DEFAULT, 20)
    assert split("softmax", DEFAULT, temperature=0.01) == {
        "business": 0, "physics": 0, "chemistry": 0, "engineering": 80}
    # a domain one sd above another: e^(1/T) times its weight
    two = {"a": 1.0, "b": 3.0}  # z = -1, +1
    w = weights("sts", list(two), scores=two, allocation="softmax", temperature=2.0)
    assert w["b"] / w["a"] == pytest.approx(math.exp(2 / 2.0))
    for bad in (None, 0.0, -1.0):
        with pytest.raises(ValueError, match="mixture.temperature"):
            weights("sts", list(two), scores=two, allocation="softmax", temperature=bad)


@pytest.mark.parametrize("rule", CONTRAST)
def test_a_missing_score_takes_no_part_and_top_k_keeps_the_largest(rule):
    scores = {"a": 5.0, "b": float("nan"), "c": 1.0, "d": 3.0}
    w = weights("sts", list(scores), scores=scores, allocation=rule, temperature=1.0)
    assert w["b"] == 0.0
    finite = {d: v for d, v in scores.items() if d != "b"}
    ref = reference_weights(rule, np.array(list(finite.values())))
    got = np.array([w[d] for d in finite])
    np.testing.assert_allclose(got / got.sum(), ref / ref.sum(), rtol=1e-12)
    top = weights("sts", list(scores), scores=scores, allocation=rule, temperature=1.0, top_k=2)
    assert {d for d, v in top.items() if v > 0} == {"a", "d"}
    # no score at all: no guidance, equal shares
    nothing = dict.fromkeys(scores, float("nan"))
    assert weights("sts", list(nothing), scores=nothing, allocation=rule,
                   temperature=1.0) == dict.fromkeys(scores, 1.0)


def test_the_rules_are_the_names_of_the_schema_and_of_the_run_names():
    from stsflow.config.schema import SCHEMA_PATH

    schema = yaml.safe_load(SCHEMA_PATH.read_text())["properties"]["mixture"]["properties"]
    assert tuple(schema["allocations"]["items"]["enum"]) == STS_ALLOCATIONS == tuple(ALLOCATIONS)
    assert schema["allocations"]["default"] == [PAPER_RULE] == ["proportional"]
    assert sorted(all_names()) == sorted(MIX_NAMES)
    for name in all_names():
        run = MixRun.parse(name)
        assert str(run) == name and MixRun.parse(str(run)) == run
    assert MixRun.parse("sts") == MixRun("sts", "proportional")  # finished runs keep the name
    assert MixRun.parse("sts_rank") == MixRun("sts", "rank")
    for bad in ("sts_proportional", "sts_best", "uniform_rank", "none"):
        with pytest.raises(ValueError):
            MixRun.parse(bad)
    with pytest.raises(ValueError):
        MixRun("oracle", "rank")


def test_every_mixture_run_name_goes_through_modes_shifts_and_the_sharded_rule():
    for base in ("full", "lora", "sae_select-top-k8"):
        for name in all_names():
            run = f"{base}-mix_{name}"
            parsed = RunMethod.parse(run)
            assert str(parsed) == run and parsed.mix == name and str(parsed.unmixed) == base
            assert re.fullmatch(TRAINED_METHOD_PATTERN, run)
            assert re.fullmatch(MODE_PATTERN, f"tuned-{run}-s2")
            assert Mode.parse(f"tuned-{run}-s2").method == run
            assert Shift.parse(f"true-{run}-s2").method == run
            assert bool(re.fullmatch(FULL_METHOD_PATTERN, run)) == (base == "full")
    for bad in ("lora-mix_sts_proportional", "lora-mix_sts_", "lora-mix_rank"):
        assert not re.fullmatch(MODE_PATTERN, f"tuned-{bad}-s2")
        with pytest.raises(ValueError):
            RunMethod.parse(bad)


def test_the_config_runs_the_papers_rule_and_a_contrast_rule_side_by_side():
    ft = {"methods": ["lora"], "sae_select": {}}
    mix = {"enabled": True, "method": None, "strategies": ["sts", "uniform", "oracle"],
           "allocations": ["proportional"], "temperature": 1.0}
    assert mixture_runs(ft, mix) == ["lora-mix_sts", "lora-mix_uniform", "lora-mix_oracle"]
    mix.update(allocations=["proportional", "softmax"], strategies=["uniform", "sts"])
    assert mix_names(mix) == ["uniform", "sts", "sts_softmax"]
    assert mixture_runs(ft, mix) == ["lora-mix_uniform", "lora-mix_sts", "lora-mix_sts_softmax"]
    mix["allocations"] = ["rank"]  # the paper's rule left out: no -mix_sts run
    assert mixture_runs(ft, mix) == ["lora-mix_uniform", "lora-mix_sts_rank"]
    # what the recipe carries beyond the name: only softmax's temperature, so a finished
    # -mix_sts run (and uniform, oracle, the other rules) keeps its parameters
    assert allocation_params("sts_softmax", dict(mix, temperature=0.5)) == {"temperature": 0.5}
    for name in ("sts", "uniform", "oracle", "sts_rank", "sts_above_min"):
        assert allocation_params(name, mix) == {}
