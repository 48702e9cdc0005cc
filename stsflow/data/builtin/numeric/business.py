"""Business items: simple and compound interest, profit, margin, break-even volume, percentage
change and markup, in whole dollars."""

from __future__ import annotations

from fractions import Fraction as F

from stsflow.data.builtin.common import _num
from stsflow.data.builtin.numeric.formats import _money, _pct, _unit


def _b_simple_interest(rng):
    while True:
        P, r, t = rng.randrange(500, 10001, 500), rng.choice((2, 3, 4, 5, 6, 8)), rng.randint(2, 8)
        if P * r % 100 == 0:
            break
    y = P * r // 100
    q = (f"An investor deposits ${P} in an account that pays {r}% simple interest per year. "
         f"How much interest does the deposit earn in {t} years?")
    body = (f"Simple interest is earned on the original deposit only. One year of interest is "
            f"{P} × {r} ÷ 100 = {y} dollars. Over {t} years the interest is {y} × {t} = {y * t} dollars.")
    return q, body, y * t, _money, [P + y * t, y, y * (t + 1), 2 * y * t]


def _b_compound(rng):
    r = rng.choice((5, 10, 20))
    step = {5: 400, 10: 100, 20: 25}[r]  # keeps every yearly balance a whole number of dollars
    P = step * rng.randint(2, 40)
    g = F(100 + r, 100)
    b1, b2 = P * g, P * g * g
    q = (f"${P} is invested at {r}% interest per year, compounded annually. What is the balance "
         f"after 2 years?")
    body = (f"Each year the balance is multiplied by {_num(g)}. After the first year: {P} × {_num(g)} = {_num(b1)}. "
            f"After the second year: {_num(b1)} × {_num(g)} = {_num(b2)} dollars.")
    return q, body, b2, _money, [P + 2 * P * r // 100, b1, b2 - P, b2 * g]  # simple interest, 1 year, interest only, 3 years


def _b_profit(rng):
    item = rng.choice(("lamps", "chairs", "backpacks", "kettles", "jackets", "phone cases"))
    n, c = rng.randrange(20, 201, 10), rng.randint(4, 60)
    p = c + rng.randint(2, 30)
    q = (f"A shop buys {n} {item} for ${c} each and sells all of them for ${p} each. "
         f"What is the shop's total profit?")
    body = (f"Revenue is {n} × {p} = {n * p} dollars and cost is {n} × {c} = {n * c} dollars. "
            f"Profit is {n * p} - {n * c} = {n * p - n * c} dollars.")
    return q, body, n * (p - c), _money, [n * p, p - c, n * c, n * (p - c) + n]


def _b_margin(rng):
    m = rng.choice((10, 20, 25, 30, 40, 50))
    while True:
        p = rng.randrange(20, 501, 10)
        if p * m % 100 == 0:
            break
    g = p * m // 100
    c = p - g
    q = (f"A product costs ${c} to make and sells for ${p}. What is the profit margin, as a "
         f"percentage of the selling price?")
    body = (f"The profit per unit is {p} - {c} = {g} dollars. As a share of the selling price: "
            f"{g} ÷ {p} × 100 = {m}%.")
    return q, body, m, _pct, [F(g * 100, c), 100 - m, F(g * 100, p) / 2, m + 5]


def _b_breakeven(rng):
    price = rng.randint(12, 80)
    var = rng.randint(2, price - 4)
    n = rng.randrange(50, 2001, 50)
    fixed = (price - var) * n
    q = (f"A company has fixed costs of ${fixed}. Each unit sells for ${price} and costs ${var} "
         f"to produce. How many units must it sell to break even?")
    body = (f"Each unit contributes {price} - {var} = {price - var} dollars towards fixed costs. "
            f"Break-even volume is {fixed} ÷ {price - var} = {n} units.")
    return q, body, n, _unit("units"), [F(fixed, price), F(fixed, var), 2 * n, n + 100]


def _b_change(rng):
    pct = rng.choice((5, 10, 12, 15, 20, 25, 30, 40, 50, 60, 75))
    while True:
        a = rng.randrange(400, 20001, 200)
        if a * pct % 100 == 0:
            break
    d = a * pct // 100
    b = a + d
    q = f"A company's annual revenue rose from ${a} to ${b}. What is the percentage increase?"
    body = f"The increase is {b} - {a} = {d} dollars. Relative to the starting value: {d} ÷ {a} × 100 = {pct}%."
    return q, body, pct, _pct, [F(d * 100, b), pct + 10, F(pct, 2), 100 + pct]


def _b_markup(rng):
    item = rng.choice(("chair", "desk lamp", "rug", "coffee table", "bookshelf", "mirror"))
    r = rng.choice((10, 20, 25, 30, 40, 50, 60))
    while True:
        c = rng.randrange(20, 501, 5)
        if c * r % 100 == 0:
            break
    m = c * r // 100
    q = f"A retailer buys a {item} for ${c} and sets the price {r}% above cost. What is the selling price?"
    body = f"The markup is {c} × {r} ÷ 100 = {m} dollars. The selling price is {c} + {m} = {c + m} dollars."
    return q, body, c + m, _money, [m, c - m, c + r, c + 2 * m]


# in the order domain_items cycles through them (changing it changes the drawn items)
TEMPLATES = (_b_simple_interest, _b_compound, _b_profit, _b_margin, _b_breakeven, _b_change,
             _b_markup)
