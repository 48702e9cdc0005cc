"""Arithmetic items: sums, differences, products and quotients worked in parts, order of
operations, percentages, fractions of a number, squares, means and least common multiples."""

from __future__ import annotations

from fractions import Fraction as F
from math import gcd

from stsflow.data.builtin.common import _coprime_fraction
from stsflow.data.builtin.numeric.formats import _plain


def _a_add(rng):
    a, b = rng.randint(101, 899), rng.randint(101, 899)
    ah, ar, bh, br = a // 100 * 100, a % 100, b // 100 * 100, b % 100
    s = a + b
    q = rng.choice(("What is {a} + {b}?", "What is the sum of {a} and {b}?",
                    "A shop sold {a} items in the morning and {b} in the afternoon. How many items did it sell in all?")
                   ).format(a=a, b=b)
    body = (f"Add the hundreds and the rest separately: {ah} + {bh} = {ah + bh} and {ar} + {br} = {ar + br}. "
            f"Then {ah + bh} + {ar + br} = {s}.")
    return q, body, s, _plain, [s - 100, s + 10, s - 10, s + 100]


def _a_sub(rng):
    a = rng.randint(400, 999)
    b = rng.randint(101, a - 50)
    bh, br = b // 100 * 100, b % 100
    d = a - b
    q = rng.choice(("What is {a} - {b}?", "What is the difference between {a} and {b}?",
                    "A tank holds {a} litres of water and {b} litres are used. How many litres are left?")
                   ).format(a=a, b=b)
    body = f"Subtract in two parts: {a} - {bh} = {a - bh}, then {a - bh} - {br} = {d}."
    return q, body, d, _plain, [d + 10, d - 10, d + 100, d - 100, a + b]


def _a_mul(rng):
    if rng.random() < 0.5:
        a, b = rng.choice([x for x in range(12, 100) if x % 10]), rng.randint(3, 9)
        at, ao = a // 10 * 10, a % 10
        p1, p2 = at * b, ao * b
        body = f"Split {a} into {at} + {ao}: {at} × {b} = {p1} and {ao} × {b} = {p2}. Then {p1} + {p2} = {p1 + p2}."
    else:
        a, b = rng.randint(12, 49), rng.choice([x for x in range(11, 30) if x % 10])
        bt, bo = b // 10 * 10, b % 10
        p1, p2 = a * bt, a * bo
        body = f"Split {b} into {bt} + {bo}: {a} × {bt} = {p1} and {a} × {bo} = {p2}. Then {p1} + {p2} = {p1 + p2}."
    p = a * b
    q = rng.choice(("What is {a} × {b}?", "What is the product of {a} and {b}?",
                    "Each box holds {a} pencils. How many pencils are in {b} boxes?")).format(a=a, b=b)
    return q, body, p, _plain, [p1, p + a, p - a, p + 10]  # p1: forgot the second partial product


def _a_div(rng):
    b, qt = rng.randint(3, 9), rng.randint(12, 99)
    a = b * qt
    q = rng.choice(("What is {a} ÷ {b}?", "What is {a} divided by {b}?",
                    "{a} stickers are shared equally among {b} children. How many stickers does each child get?")
                   ).format(a=a, b=b)
    body = f"We need the number that gives {a} when multiplied by {b}. Since {b} × {qt} = {a}, we get {a} ÷ {b} = {qt}."
    return q, body, qt, _plain, [qt + 1, qt - 1, qt + 10, qt - 10]


def _a_order(rng):
    a, b, c = rng.randint(2, 20), rng.randint(2, 12), rng.randint(2, 12)
    if rng.random() < 0.5:
        r = a + b * c
        q = f"What is the value of {a} + {b} × {c}?"
        body = f"Multiplication comes before addition, so first {b} × {c} = {b * c}. Then {a} + {b * c} = {r}."
        wrong = [(a + b) * c, a + b + c, a * b + c]
    else:
        c = rng.randint(1, a * b - 1)
        r = a * b - c
        q = f"What is the value of {a} × {b} - {c}?"
        body = f"Multiplication comes before subtraction, so first {a} × {b} = {a * b}. Then {a * b} - {c} = {r}."
        wrong = [a * (b - c), a * b + c, r + 10, r - 1]
    return q, body, r, _plain, wrong


def _a_percent(rng):
    while True:
        r, N = rng.choice((5, 10, 15, 20, 25, 30, 40, 50, 60, 75)), rng.randrange(20, 901, 10)
        if N * r % 100 == 0:
            break
    v = N * r // 100
    q = f"What is {r}% of {N}?"
    body = f"{r}% means {r} out of every 100, so {r}% of {N} is {N} × {r} ÷ 100 = {v}."
    return q, body, v, _plain, [F(N * r, 10), N - v, 2 * v, F(v, 2)]


def _a_fraction(rng):
    n, d = _coprime_fraction(rng)
    u = rng.randint(3, 30)
    N = u * d
    q = f"What is {n}/{d} of {N}?"
    body = f"First divide into {d} equal parts: {N} ÷ {d} = {u}. Then take {n} of them: {u} × {n} = {u * n}."
    return q, body, u * n, _plain, [u, N - u * n, N * n, u * n + u]


def _a_square(rng):
    a = rng.randint(11, 35)
    q = rng.choice(("What is {a} squared?", "What is the square of {a}?",
                    "A square tile is {a} cm on each side. What is its area in square centimetres?")).format(a=a)
    body = f"Squaring means multiplying the number by itself: {a} × {a} = {a * a}."
    return q, body, a * a, _plain, [2 * a, (a + 1) ** 2, (a - 1) ** 2, 4 * a]


def _a_mean(rng):
    k = rng.randint(3, 5)
    while True:
        xs = [rng.randint(10, 99) for _ in range(k)]
        if sum(xs) % k == 0:
            break
    s, m = sum(xs), sum(xs) // k
    q = f"What is the mean (average) of {', '.join(map(str, xs[:-1]))} and {xs[-1]}?"
    body = f"Add the numbers: {' + '.join(map(str, xs))} = {s}. Divide by how many there are: {s} ÷ {k} = {m}."
    return q, body, m, _plain, [s, F(s, k - 1), m + 1, m - 1]


def _a_lcm(rng):
    while True:
        a, b = sorted(rng.sample(range(2, 16), 2))
        lcm = a * b // gcd(a, b)
        if gcd(a, b) > 1 and b % a:  # otherwise the answer is trivially a × b or b
            break
    q = f"What is the least common multiple of {a} and {b}?"
    mults = ", ".join(str(b * i) for i in range(1, lcm // b + 1))
    body = (f"List the multiples of {b}: {mults}. The first one that {a} divides exactly is {lcm}, "
            f"because {a} × {lcm // a} = {lcm}.")
    return q, body, lcm, _plain, [a * b, gcd(a, b), lcm + b, 2 * lcm]


# in the order domain_items cycles through them (changing it changes the drawn items)
TEMPLATES = (_a_add, _a_sub, _a_mul, _a_div, _a_order, _a_percent, _a_fraction, _a_square, _a_mean,
             _a_lcm)
