"""The built-in candidate SFT sets beside sft_math (sft_algebra, sft_geography): schema,
determinism, correct worked answers, and no question shared with any item of any built-in
domain (test, demonstration or pool split) or with another SFT set."""

from __future__ import annotations

import re
from fractions import Fraction

import pytest
from test_builtin import equations

from stsflow.data import builtin
from stsflow.data.builtin import algebra_sft, recall_sft


@pytest.fixture(scope="module")
def domain_questions():
    out = set()
    for name in builtin.DOMAINS:
        test, demos = builtin.domain_items(name)
        out |= {r["question"] for r in test + demos}
        if name in builtin.NUMERIC_DOMAINS:
            out |= {r["question"] for r in builtin.pool_items(name)}
    return out


@pytest.mark.parametrize("name", sorted(builtin.SFT_SETS))
def test_sft_sets_are_disjoint_from_every_domain_item(name, domain_questions):
    questions = [r["question"] for r in builtin.SFT_SETS[name]()]
    assert len(set(questions)) == len(questions)
    shared = set(questions) & domain_questions
    assert not shared, f"{name} repeats domain items: {sorted(shared)[:3]}"
    # not one of them is even a question of another SFT set
    for other, fn in builtin.SFT_SETS.items():
        if other != name:
            assert not set(questions) & {r["question"] for r in fn()}


@pytest.mark.parametrize("name", ["sft_algebra", "sft_geography"])
def test_schema_ids_and_determinism(name):
    from stsflow.data.corpora import load_corpus, normalise

    fn = builtin.SFT_SETS[name]
    recs = fn()
    assert len(recs) >= 250
    assert fn() == recs and fn(seed=1) != recs
    assert len({r["id"] for r in recs}) == len(recs)
    for r in recs:
        assert set(r) == {"id", "question", "solution", "answer"}
        assert all(isinstance(v, str) and v for v in r.values())
        assert r["solution"].endswith(f"The answer is {r['answer']}.")
    assert normalise(recs[:20], "limo") == recs[:20]
    # a config names it like sft_math, and the materialised corpus has every record
    assert len(load_corpus({"builtin": {"name": name}}, "limo", {})) == len(recs)


def _algebra_expected(kind: str, p: dict) -> Fraction:
    """Each answer recomputed from the drawn quantities, not from the solution text."""
    if kind in ("one_step", "minus"):
        return Fraction(p["c"] - p["b"], p["a"])
    if kind == "both_sides":
        return Fraction(p["d"] + p["b"], p["a"] - p["p"])
    if kind in ("arith_next", "geo_next"):
        t = p["terms"]
        return t[-1] + (t[1] - t[0]) if p["variant"] == "arith" else Fraction(t[-1] * t[1], t[0])
    if kind == "nth_term":
        return p["a"] + (p["k"] - 1) * p["d"]
    if kind == "substitute":
        return p["c1"] * p["u"] + (1 if p["plus"] else -1) * p["c2"] * p["w"]
    if kind == "pair":
        x = Fraction(p["s"] + p["d"], 2)
        return x if p["ask"] == "x" else p["s"] - x
    raise AssertionError(kind)


def test_algebra_answers_and_every_computation_are_right():
    cases = algebra_sft._algebra_cases(400, 0)
    assert {k for _, k, _ in cases} == set(algebra_sft._ALGEBRA_TEMPLATES)
    substituted = 0
    for rec, kind, params in cases:
        assert Fraction(rec["answer"]) == _algebra_expected(kind, params), rec
        for expr, value, written in equations(rec["solution"]):
            assert value == written, f"{expr} = {written} in {rec['solution']}"
        # the equation in the question holds at the answer (v = answer substituted)
        m = re.fullmatch(r"(?:Solve for|Find) (\w): (.*)\.|Find (\w) if (.*)\.", rec["question"])
        if m:
            var, eq = (m.group(1), m.group(2)) if m.group(1) else (m.group(3), m.group(4))
            lhs, rhs = eq.split(" = ")
            sub = {var: f"*Fraction('{rec['answer']}')"}
            evaluate = lambda side: eval(re.sub(rf"(\d+){var}",  # noqa: E731
                                                lambda t: t.group(1) + sub[var], side),
                                         {"Fraction": Fraction})
            assert evaluate(lhs) == evaluate(rhs), rec["question"]
            substituted += 1
    assert substituted == sum(k in ("one_step", "minus", "both_sides") for _, k, _ in cases)


def test_geography_answers_come_from_one_fact_table():
    capitals = {c: cap for c, cap, _ in recall_sft._COUNTRIES}
    assert len(capitals) == len(recall_sft._COUNTRIES)  # a country listed once
    assert len(set(capitals.values())) == len(capitals)  # a capital names one country
    for r in builtin.sft_geography():
        m = re.fullmatch(r"What is the capital city of (.+)\?", r["question"])
        if m:
            assert r["answer"] == capitals[m.group(1)]
        m = re.fullmatch(r"Which country has (.+) as its capital\?", r["question"])
        if m:
            country = next(c for c, cap in capitals.items() if cap == m.group(1))
            assert r["answer"].lower() == country.lower()
    assert builtin.sft_geography(10) == builtin.sft_geography()[:10]
    with pytest.raises(ValueError, match="sft_geography has"):
        builtin.sft_geography(10_000)
