"""The built-in default data: determinism, schema, and correctness of every worked computation."""

from __future__ import annotations

import re
from collections import Counter
from fractions import Fraction

import pytest

from stsflow.data import builtin
from stsflow.data.builtin import math_sft
from stsflow.text.prompts import LETTERS

# `a op b (op c ...) = d` with bare numbers (optionally $-prefixed); a number glued to a letter,
# like the 2 in H2O, cannot start an equation.
NUM = r"\$?\d+(?:\.\d+)?"
EQUATION = re.compile(rf"(?<![\w.])((?:{NUM}\s*[-+×÷]\s*)+{NUM})\s*=\s*({NUM})")


def equations(text: str) -> list[tuple[str, Fraction, Fraction]]:
    """(expression, its exact value, the value written after '=') for each equation in text."""
    out = []
    for m in EQUATION.finditer(text):
        expr = m.group(1).replace("$", "").replace("×", "*").replace("÷", "/")
        expr = re.sub(r"\d+(?:\.\d+)?", lambda n: f"Fraction('{n.group()}')", expr)
        out.append((m.group(1), eval(expr, {"Fraction": Fraction}), Fraction(m.group(2).lstrip("$"))))
    return out


def checked_equations(text: str) -> list[tuple[str, Fraction, Fraction]]:
    """``equations`` plus a guard: every '=' belongs to a checked equation, apart from symbolic
    formulas such as 'c1 × V1 = c2 × V2', so no computation escapes the check unseen."""
    eqs = equations(text)
    symbolic = len(re.findall(r"(?<![\w.])[A-Za-z]\w* × [A-Za-z]\w* =", text))
    assert text.count("=") == len(eqs) + symbolic, text
    for expr, value, written in eqs:
        assert value == written, f"{expr} = {written} in: {text}"
    return eqs


@pytest.fixture(scope="module")
def math_cases():
    return math_sft._math_cases(400, 0)


@pytest.fixture(scope="module")
def domains():
    return {name: builtin.domain_items(name) for name in builtin.DOMAINS}


# --- SFT math --------------------------------------------------------------------------------

def test_sft_counts_schema_and_ids(math_cases):
    recs = builtin.sft_math()
    assert recs == [r for r, _, _ in math_cases]
    assert len(recs) >= 300
    for r in recs:
        assert set(r) == {"id", "question", "solution", "answer"}
        assert all(isinstance(v, str) and v for v in r.values())
        assert re.fullmatch(r"math-\d{4}", r["id"])
    assert len({r["id"] for r in recs}) == len(recs)
    assert len({r["question"] for r in recs}) == len(recs)


def test_sft_templates_and_question_length(math_cases):
    kinds = Counter(kind for _, kind, _ in math_cases)
    assert len(kinds) >= 8 and min(kinds.values()) >= 20
    for rec, _, _ in math_cases:
        assert 18 <= len(rec["question"].split()) <= 60, rec["question"]


def test_sft_solutions_show_correct_arithmetic(math_cases):
    for rec, _, _ in math_cases:
        lines = rec["solution"].splitlines()
        assert len(lines) >= 3 and all(line.startswith(f"Step {i}: ") for i, line in enumerate(lines[:-1], 1))
        assert lines[-1] == f"The answer is {rec['answer']}."
        eqs = checked_equations(rec["solution"])
        assert len(eqs) >= 2, rec["solution"]
        assert eqs[-1][2] == Fraction(rec["answer"]), rec["solution"]


def _expected(kind: str, p: dict) -> int:
    """The answer recomputed from the drawn parameters, independently of the solution text."""
    v = p.get("variant")
    if kind == "shopping":
        return p["bill"] - (p["qty"] * p["price"] + p["extra"])
    if kind == "travel":
        return p["v1"] * p["t1"] + p["v2"] * p["t2"] if v == "legs" else 2 * p["d"] // p["v"]
    if kind == "ages":
        return p["m"] * p["a"] + p["k"] if v == "times" else (p["s"] + p["d"]) // 2
    if kind == "geometry":
        return 2 * (p["L"] + p["W"]) * p["c"] if v == "fence" else p["L"] * p["W"] // p["b"]
    if kind == "fraction":
        return p["N"] - p["N"] * p["n"] // p["d"]
    if kind == "percent":
        if v == "sale":
            return p["price"] * (100 - p["r"]) // 100 + p["ship"]
        return p["N"] * (100 - p["r"]) // 100
    if kind == "production":
        return (p["t"] * p["m"] - p["u"]) * p["d"]
    if kind == "units":
        return {"rope": lambda: (100 * p["m"] + p["c"]) // p["piece"],
                "flour": lambda: 1000 * p["k"] // p["g"],
                "films": lambda: 60 * p["h"] // p["m"],
                "lemonade": lambda: 1000 * p["L"] // p["g"]}[v]()
    if kind == "work":
        return p["N"] // (p["r"] * p["k"]) if v == "team" else p["N"] // p["w"] + p["b"]
    if kind == "average":
        return sum(p["xs"]) // 4 if v == "mean" else 4 * p["m"] - p["a"] - p["b"] - p["c"]
    if kind == "savings":
        return (p["C"] - p["S"]) // p["w"]
    if kind == "ratio":
        return p["N"] * p["b"] // (p["a"] + p["b"])
    if kind == "interest":
        return p["P"] + p["P"] * p["r"] * p["t"] // 100
    if kind == "profit":
        return (p["n"] - p["k"]) * p["pr"] - p["n"] * p["c"]
    raise AssertionError(f"no check for template {kind}")


def test_sft_answers_match_recomputation(math_cases):
    for rec, kind, params in math_cases:
        assert rec["answer"] == str(_expected(kind, params)), (kind, params, rec["question"])
        assert int(rec["answer"]) > 0


def test_sft_determinism():
    assert builtin.sft_math(50, seed=3) == builtin.sft_math(50, seed=3)
    assert builtin.sft_math(50, seed=3) != builtin.sft_math(50, seed=4)


# --- Domains ---------------------------------------------------------------------------------

def test_domain_list():
    assert len(builtin.DOMAINS) >= 8 and len(set(builtin.DOMAINS)) == len(builtin.DOMAINS)
    assert set(builtin.NUMERIC_DOMAINS) | set(builtin.KNOWLEDGE_DOMAINS) == set(builtin.DOMAINS)
    assert {"law", "history", "philosophy", "biology", "psychology"} <= set(builtin.DOMAINS)
    with pytest.raises(ValueError):
        builtin.domain_items("astrology")


def test_domain_counts_and_schema(domains):
    keys = {"question_id", "question", "options", "answer", "answer_index", "cot_content", "category", "src"}
    for name, (test, demos) in domains.items():
        assert len(test) == 40 and len(demos) == 5
        for r in test + demos:
            assert set(r) == keys
            assert isinstance(r["question_id"], int) and isinstance(r["answer_index"], int)
            assert isinstance(r["question"], str) and r["question"].strip()
            assert 4 <= len(r["options"]) <= 6 and all(isinstance(o, str) and o for o in r["options"])
            assert len(set(r["options"])) == len(r["options"]), r
            assert r["answer"] == LETTERS[r["answer_index"]] and r["answer_index"] < len(r["options"])
            assert r["category"] == name and r["src"] == f"stsflow-synthetic-{name}"


def test_cot_format(domains):
    for test, demos in domains.values():
        for r in test + demos:
            cot = r["cot_content"]
            assert cot.startswith("A: Let's think step by step. ")
            assert cot.endswith(f"The answer is ({r['answer']}).")
            assert len(re.findall(r"The answer is \(", cot)) == 1
            assert len(cot.split()) >= 12


def test_no_duplicate_questions_or_ids(domains):
    questions = [r["question"] for test, demos in domains.values() for r in test + demos]
    assert len(set(questions)) == len(questions)
    ids = [r["question_id"] for test, demos in domains.values() for r in test + demos]
    assert len(set(ids)) == len(ids)


def test_demo_facts_not_in_test(domains):
    # Knowledge items explain one fact each; a demo must not give away a test item's answer.
    for name in builtin.KNOWLEDGE_DOMAINS:
        test, demos = domains[name]
        demo_expl = {d["cot_content"].rsplit(" The answer is", 1)[0] for d in demos}
        assert not any(t["cot_content"].rsplit(" The answer is", 1)[0] in demo_expl for t in test)


def test_numeric_domain_computations(domains):
    for name in builtin.NUMERIC_DOMAINS:
        test, demos = domains[name]
        for r in test + demos:
            eqs = checked_equations(r["cot_content"])
            assert eqs, r["cot_content"]
            right = r["options"][r["answer_index"]]
            assert Fraction(re.search(r"\d+(?:\.\d+)?", right).group()) == eqs[-1][2], (right, r["cot_content"])


def test_answer_positions_spread(domains):
    for name, (test, demos) in domains.items():
        letters = Counter(r["answer"] for r in test + demos)
        assert set("ABCD") <= set(letters), (name, letters)
        assert max(letters.values()) <= 0.35 * len(test + demos), (name, letters)


def test_domain_determinism():
    for name in ("arithmetic", "law"):
        assert builtin.domain_items(name, seed=2) == builtin.domain_items(name, seed=2)
        assert builtin.domain_items(name, seed=2) != builtin.domain_items(name, seed=3)
    # Demos do not depend on how many test items are asked for.
    assert builtin.domain_items("history", n_test=10)[1] == builtin.domain_items("history")[1]


def test_records_pass_corpus_normalisation(domains):
    from stsflow.data.corpora import normalise

    test, demos = domains["law"]
    assert normalise(test + demos, "mmlu_pro") == test + demos
    sft = builtin.sft_math(20)
    assert normalise(sft, "limo") == sft


# --- Files -----------------------------------------------------------------------------------

def test_write_default_data(tmp_path):
    import json

    a = builtin.write_default_data(tmp_path / "a")
    b = builtin.write_default_data(tmp_path / "b")
    c = builtin.write_default_data(tmp_path / "c", seed=1)
    assert set(a) == {"sft_math"} | {f"{d}.{s}" for d in builtin.DOMAINS for s in ("test", "demos")}
    for key, path in a.items():
        assert path.exists() and path.name == f"{key}.jsonl"
        assert path.read_bytes() == b[key].read_bytes()
    assert a["sft_math"].read_bytes() != c["sft_math"].read_bytes()
    lines = a["sft_math"].read_text(encoding="utf-8").splitlines()
    assert len(lines) == 400
    assert [json.loads(line) for line in lines] == builtin.sft_math()
    first = a["law.demos"].read_text(encoding="utf-8").splitlines()[0]
    assert list(json.loads(first)) == sorted(json.loads(first))  # keys are sorted
    assert len(a["law.test"].read_text(encoding="utf-8").splitlines()) == 40
