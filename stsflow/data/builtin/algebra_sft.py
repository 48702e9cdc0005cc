"""The built-in SFT set ``sft_algebra``: symbolic number work with worked, numbered solutions (LIMO
schema): linear equations, number sequences, expressions with letters, and pairs of equations.

A candidate of a different character than ``sft_math``: numeric, but without stories (no
shoppers, trains or ages), so the two SFT sets share the arithmetic and differ in what the
questions are about. As in ``sft_math``, every computation in a solution is written as ``a op b
= c`` with bare numbers (re-evaluated by the tests), and ``params`` hold the drawn quantities so
the tests can recompute each answer with their own formula."""

from __future__ import annotations

import random
from collections.abc import Callable

from stsflow.data.builtin.common import _num

_LETTERS = ("x", "y", "n", "m", "k", "t")


def _g_one_step(rng):
    v = rng.choice(_LETTERS)
    a, x, b = rng.randint(2, 12), rng.randint(2, 25), rng.randint(1, 60)
    c = a * x + b
    q = f"Solve for {v}: {a}{v} + {b} = {c}."
    steps = [f"Subtract {b} from both sides: {c} - {b} = {c - b}, so {a}{v} = {c - b}.",
             f"Divide both sides by {a}: {c - b} ÷ {a} = {x}, so {v} = {x}."]
    return q, steps, x, dict(a=a, b=b, c=c)


def _g_minus(rng):
    v = rng.choice(_LETTERS)
    a, x = rng.randint(2, 12), rng.randint(3, 25)
    b = rng.randint(1, a * x - 1)
    c = a * x - b
    q = f"Find {v} if {a}{v} - {b} = {c}."
    steps = [f"Add {b} to both sides: {c} + {b} = {c + b}, so {a}{v} = {c + b}.",
             f"Divide both sides by {a}: {c + b} ÷ {a} = {x}, so {v} = {x}."]
    return q, steps, x, dict(a=a, b=-b, c=c)


def _g_both_sides(rng):
    v = rng.choice(_LETTERS)
    while True:  # a·v − b = p·v + d with a whole, positive answer and d > 0
        a, p, x, b = rng.randint(3, 12), rng.randint(1, 9), rng.randint(2, 20), rng.randint(1, 30)
        d = (a - p) * x - b
        if a > p and d > 0:
            break
    q = f"Solve for {v}: {a}{v} - {b} = {p}{v} + {d}."
    steps = [f"Take {p}{v} from both sides: {a} - {p} = {a - p}, so {a - p}{v} - {b} = {d}.",
             f"Add {b} to both sides: {d} + {b} = {d + b}, so {a - p}{v} = {d + b}.",
             f"Divide both sides by {a - p}: {d + b} ÷ {a - p} = {x}, so {v} = {x}."]
    return q, steps, x, dict(a=a, b=b, p=p, d=d)


def _g_arith_next(rng):
    a, d, n = rng.randint(1, 40), rng.randint(2, 15), rng.randint(4, 5)
    terms = [a + i * d for i in range(n)]
    nxt = terms[-1] + d
    q = f"What is the next number in the sequence {', '.join(map(str, terms))}, ...?"
    steps = [f"The difference between neighbouring terms is {terms[1]} - {terms[0]} = {d}, "
             "and it is the same all along the sequence.",
             f"The next term is {terms[-1]} + {d} = {nxt}."]
    return q, steps, nxt, dict(variant="arith", terms=terms)


def _g_geo_next(rng):
    a, r, n = rng.randint(1, 7), rng.choice((2, 3, 4, 5)), rng.randint(4, 5)
    terms = [a * r ** i for i in range(n)]
    nxt = terms[-1] * r
    q = f"What number comes next in the pattern {', '.join(map(str, terms))}, ...?"
    steps = [f"Each term is the previous one multiplied by the same number: {terms[1]} ÷ "
             f"{terms[0]} = {r}.",
             f"The next term is {terms[-1]} × {r} = {nxt}."]
    return q, steps, nxt, dict(variant="geo", terms=terms)


def _g_nth_term(rng):
    a, d, k = rng.randint(1, 30), rng.randint(2, 12), rng.randint(10, 60)
    terms = [a + i * d for i in range(4)]
    step = (k - 1) * d
    q = (f"An arithmetic sequence begins {', '.join(map(str, terms))}, ... "
         f"What is its term number {k}?")
    steps = [f"The common difference is {terms[1]} - {terms[0]} = {d}.",
             f"Term number {k} is the first term plus {k - 1} differences: {k - 1} × {d} = {step}.",
             f"So it is {a} + {step} = {a + step}."]
    return q, steps, a + step, dict(a=a, d=d, k=k)


def _g_substitute(rng):
    p, r = rng.sample(("a", "b", "c", "p", "q", "r", "u", "w"), 2)
    u, w = rng.randint(2, 12), rng.randint(2, 12)
    c1, c2 = rng.randint(2, 9), rng.randint(2, 9)
    s1, s2 = c1 * u, c2 * w
    if rng.random() < 0.5:
        q = f"If {p} = {u} and {r} = {w}, what is the value of {c1}{p} + {c2}{r}?"
        res = s1 + s2
        last = f"Add them: {s1} + {s2} = {res}."
    else:
        if s1 <= s2:
            u, w, c1, c2, s1, s2 = w, u, c2, c1, s2, s1
        q = f"If {p} = {u} and {r} = {w}, what is the value of {c1}{p} - {c2}{r}?"
        res = s1 - s2
        last = f"Subtract: {s1} - {s2} = {res}."
    steps = [f"Replace {p} by {u}: {c1} × {u} = {s1}.", f"Replace {r} by {w}: {c2} × {w} = {s2}.",
             last]
    return q, steps, res, dict(c1=c1, u=u, c2=c2, w=w, plus="+" in q.split("value of")[1])


def _g_pair(rng):
    while True:
        x, y = rng.randint(2, 40), rng.randint(1, 39)
        if x > y:
            break
    s, d = x + y, x - y
    ask = rng.choice(("x", "y"))
    q = (f"Two numbers x and y satisfy x + y = {s} and x - y = {d}. What is {ask}?")
    steps = [f"Add the two equations: the y terms cancel and {s} + {d} = {2 * x}, which is 2x.",
             f"So x = {2 * x} ÷ 2 = {x}."]
    if ask == "y":
        steps.append(f"Then y = {s} - {x} = {y}.")
    return q, steps, x if ask == "x" else y, dict(s=s, d=d, ask=ask)


_ALGEBRA_TEMPLATES: dict[str, Callable] = {
    "one_step": _g_one_step, "minus": _g_minus, "both_sides": _g_both_sides,
    "arith_next": _g_arith_next, "geo_next": _g_geo_next, "nth_term": _g_nth_term,
    "substitute": _g_substitute, "pair": _g_pair,
}


def _algebra_cases(n: int = 400, seed: int = 0) -> list[tuple[dict, str, dict]]:
    """(record, template kind, drawn parameters) for each problem; ``sft_algebra`` keeps the
    records."""
    rng = random.Random(f"stsflow-sft-algebra:{seed}")
    kinds = list(_ALGEBRA_TEMPLATES)
    out, seen = [], set()
    attempts = 0
    while len(out) < n:
        attempts += 1
        if attempts > 50 * n:
            raise RuntimeError("could not draw enough distinct algebra problems")
        kind = kinds[len(out) % len(kinds)]  # round robin: every template equally represented
        q, steps, answer, params = _ALGEBRA_TEMPLATES[kind](rng)
        if q in seen:
            continue
        seen.add(q)
        solution = "\n".join(f"Step {i}: {s}" for i, s in enumerate(steps, 1))
        solution += f"\nThe answer is {_num(answer)}."
        rec = {"id": f"algebra-{len(out) + 1:04d}", "question": q, "solution": solution,
               "answer": _num(answer)}
        out.append((rec, kind, params))
    return out


def sft_algebra(n: int = 400, seed: int = 0) -> list[dict]:
    """``n`` distinct algebra and sequence problems with worked solutions, in the LIMO schema."""
    return [rec for rec, _, _ in _algebra_cases(n, seed)]
