"""Numeric domains (arithmetic, business, physics, chemistry, engineering): templates that draw a
question, its worked explanation and its exact answer, and distractors that model typical slips
(wrong operation, forgotten step), so wrong options are tempting rather than random."""

from __future__ import annotations

from fractions import Fraction
from math import gcd
from typing import Callable

from stsflow.data.builtin.common import _coprime_fraction, _num

# ----------------------------------------------------------------------------------------------
# Numeric domains: each template returns (question, worked explanation, answer value, option
# formatter, plausible wrong values). The wrong values model typical slips (wrong operation,
# forgotten step), so distractors are tempting rather than random.

def _money(v) -> str:
    return f"${_num(v)}"


def _pct(v) -> str:
    return f"{_num(v)}%"


def _unit(u: str) -> Callable:
    return lambda v: f"{_num(v)} {u}"


def _plain(v) -> str:
    return _num(v)


F = Fraction


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


def _p_speed(rng):
    v, t = rng.randrange(20, 121, 5), rng.randint(2, 8)
    d = v * t
    veh = rng.choice(("car", "train", "coach", "motorcycle"))
    q = f"A {veh} travels {d} km in {t} hours. What is its average speed?"
    body = f"Average speed is distance divided by time: {d} ÷ {t} = {v} km/h."
    return q, body, v, _unit("km/h"), [d * t, v + 10, v - 5, 2 * v]


def _p_force(rng):
    m, a = rng.randint(2, 50), rng.randint(2, 12)
    q = f"What net force is needed to give a {m} kg object an acceleration of {a} m/s²?"
    body = f"Newton's second law says force equals mass times acceleration: {m} × {a} = {m * a} N."
    return q, body, m * a, _unit("N"), [F(m, a), m + a, 2 * m * a, m * a + m]


def _p_weight(rng):
    m = rng.randint(2, 90)
    w = m * F("9.8")
    q = f"What is the weight of a {m} kg mass on Earth? Take g = 9.8 m/s²."
    body = f"Weight is mass times the gravitational field strength: {m} × 9.8 = {_num(w)} N."
    return q, body, w, _unit("N"), [m, 10 * m, w + F("9.8"), m + F("9.8")]


def _p_kinetic(rng):
    m, v = rng.randint(2, 20), rng.randint(2, 15)
    e = F(1, 2) * m * v * v
    q = f"A {m} kg object moves at {v} m/s. What is its kinetic energy?"
    body = f"Kinetic energy is one half of mass times speed squared: 0.5 × {m} × {v} × {v} = {_num(e)} J."
    return q, body, e, _unit("J"), [m * v * v, F(1, 2) * m * v, m * v, 2 * e + m]


def _p_work(rng):
    f_, d = rng.randrange(10, 501, 10), rng.randint(2, 20)
    q = f"A constant force of {f_} N pushes a crate {d} m in the direction of the force. How much work is done?"
    body = f"Work is force times distance moved along the force: {f_} × {d} = {f_ * d} J."
    return q, body, f_ * d, _unit("J"), [F(f_, d), f_ + d, 2 * f_ * d, f_ * d + f_]


def _p_power(rng):
    p, t = rng.randrange(20, 501, 10), rng.randint(2, 20)
    w = p * t
    q = f"A motor does {w} J of work in {t} s. What is its average power output?"
    body = f"Power is work done divided by the time taken: {w} ÷ {t} = {p} W."
    return q, body, p, _unit("W"), [w * t, F(t, w), 2 * p, p + t]


def _p_density(rng):
    rho, V = F(rng.randint(2, 24), 2), rng.randrange(10, 501, 10)
    m = rho * V
    q = f"A block has a mass of {_num(m)} g and a volume of {V} cm³. What is its density?"
    body = f"Density is mass divided by volume: {_num(m)} ÷ {V} = {_num(rho)} g/cm³."
    return q, body, rho, _unit("g/cm³"), [F(V) / m, m * V, rho * 10, rho + 1]


def _p_wave(rng):
    f_, lam = rng.randint(2, 500), F(rng.randint(1, 20), 2)
    v = f_ * lam
    q = f"A wave has a frequency of {f_} Hz and a wavelength of {_num(lam)} m. What is its speed?"
    body = f"Wave speed is frequency times wavelength: {f_} × {_num(lam)} = {_num(v)} m/s."
    return q, body, v, _unit("m/s"), [f_ / lam, f_ + lam, 2 * v, v + 10]


def _p_accel(rng):
    v1, a, t = rng.randint(0, 20), rng.randint(1, 6), rng.randint(2, 10)
    v2 = v1 + a * t
    q = f"A cyclist speeds up steadily from {v1} m/s to {v2} m/s in {t} s. What is the acceleration?"
    body = (f"Acceleration is the change in velocity divided by the time taken. The change is "
            f"{v2} - {v1} = {v2 - v1} m/s, so the acceleration is {v2 - v1} ÷ {t} = {a} m/s².")
    return q, body, a, _unit("m/s²"), [F(v2, t), (v2 - v1) * t, a + 1, F(v1 + v2, t)]


def _p_momentum(rng):
    m, v = rng.randint(2, 1500), rng.randint(2, 30)
    q = f"What is the momentum of a {m} kg object moving at {v} m/s?"
    body = f"Momentum is mass times velocity: {m} × {v} = {m * v} kg·m/s."
    return q, body, m * v, _unit("kg·m/s"), [F(m, v), m + v, F(1, 2) * m * v * v, 2 * m * v]


def _p_gpe(rng):
    m, h = rng.randint(1, 60), rng.randint(2, 30)
    e = m * F("9.8") * h
    q = f"A {m} kg box is lifted {h} m straight up. How much gravitational potential energy does it gain? Take g = 9.8 m/s²."
    body = f"Gravitational potential energy is mass times g times height: {m} × 9.8 × {h} = {_num(e)} J."
    return q, body, e, _unit("J"), [m * h, m * 10 * h, e + m, F(e, 2)]


def _p_pressure(rng):
    p, A = rng.randrange(100, 5001, 50), rng.choice((2, 4, 5, 8, 10))
    f_ = p * A
    q = f"A force of {f_} N is spread evenly over an area of {A} m². What pressure does it exert?"
    body = f"Pressure is force divided by area: {f_} ÷ {A} = {p} Pa."
    return q, body, p, _unit("Pa"), [f_ * A, F(A, f_), 2 * p, p + A]


# Rounded atomic masses, as school problems give them.
_MASS = {"H": F(1), "C": F(12), "N": F(14), "O": F(16), "Na": F(23), "Mg": F(24), "S": F(32),
         "Cl": F("35.5"), "K": F(39), "Ca": F(40)}
_COMPOUNDS = (("water", "H2O", (("H", 2), ("O", 1))), ("carbon dioxide", "CO2", (("C", 1), ("O", 2))),
              ("methane", "CH4", (("C", 1), ("H", 4))), ("ammonia", "NH3", (("N", 1), ("H", 3))),
              ("sodium chloride", "NaCl", (("Na", 1), ("Cl", 1))), ("magnesium oxide", "MgO", (("Mg", 1), ("O", 1))),
              ("calcium carbonate", "CaCO3", (("Ca", 1), ("C", 1), ("O", 3))),
              ("sulfuric acid", "H2SO4", (("H", 2), ("S", 1), ("O", 4))),
              ("sodium hydroxide", "NaOH", (("Na", 1), ("O", 1), ("H", 1))),
              ("potassium chloride", "KCl", (("K", 1), ("Cl", 1))),
              ("glucose", "C6H12O6", (("C", 6), ("H", 12), ("O", 6))),
              ("hydrogen chloride", "HCl", (("H", 1), ("Cl", 1))), ("oxygen gas", "O2", (("O", 2),)),
              ("nitrogen gas", "N2", (("N", 2),)), ("ethane", "C2H6", (("C", 2), ("H", 6))),
              ("calcium oxide", "CaO", (("Ca", 1), ("O", 1))), ("sulfur dioxide", "SO2", (("S", 1), ("O", 2))),
              ("magnesium chloride", "MgCl2", (("Mg", 1), ("Cl", 2))),
              ("ethanol", "C2H6O", (("C", 2), ("H", 6), ("O", 1))))


def _molar_mass(comp) -> tuple[F, str, str]:
    """(molar mass, the sum written out, the atomic masses the question should quote)."""
    terms = [f"{n} × {_num(_MASS[el])}" if n > 1 else _num(_MASS[el]) for el, n in comp]
    quote = ", ".join(f"{el} = {_num(_MASS[el])}" for el, _ in comp)
    return sum(_MASS[el] * n for el, n in comp), " + ".join(terms), quote


def _c_molar_mass(rng):
    name, formula, comp = rng.choice(_COMPOUNDS)
    M, expr, quote = _molar_mass(comp)
    q = f"What is the molar mass of {name} ({formula})? Use the atomic masses {quote}."
    body = f"Add the masses of all the atoms in one formula unit of {formula}: {expr} = {_num(M)} g/mol."
    naive = sum(_MASS[el] for el, _ in comp)  # counting each element once
    return q, body, M, _unit("g/mol"), [naive, M + 16, M - 1, 2 * M]


_AMOUNTS = tuple(F(x) for x in ("0.5", "1.5", "2", "2.5", "3", "4", "5", "0.25", "6"))


def _c_moles(rng):
    name, formula, comp = rng.choice(_COMPOUNDS)
    M, expr, quote = _molar_mass(comp)
    n = rng.choice(_AMOUNTS)
    m = n * M
    if rng.random() < 0.5:
        q = f"How many moles are there in {_num(m)} g of {name} ({formula})? Use the atomic masses {quote}."
        body = (f"The molar mass of {formula} is {expr} = {_num(M)} g/mol. "
                f"Moles are mass divided by molar mass: {_num(m)} ÷ {_num(M)} = {_num(n)} mol.")
        return q, body, n, _unit("mol"), [m * M, 2 * n, n + 1, F(n, 2)]
    q = f"What is the mass of {_num(n)} mol of {name} ({formula})? Use the atomic masses {quote}."
    body = (f"The molar mass of {formula} is {expr} = {_num(M)} g/mol. "
            f"Mass is moles times molar mass: {_num(n)} × {_num(M)} = {_num(m)} g.")
    return q, body, m, _unit("g"), [M, m + M, 2 * m, M / n]


def _c_molarity(rng):
    solute = rng.choice(("sodium chloride", "glucose", "potassium chloride", "sodium hydroxide", "sucrose"))
    n, V = rng.choice(_AMOUNTS), rng.choice((F("0.25"), F("0.5"), F(1), F(2), F(4), F(5)))
    c = n / V
    q = f"{_num(n)} mol of {solute} is dissolved in water to make {_num(V)} L of solution. What is the concentration?"
    body = f"Concentration is moles of solute divided by litres of solution: {_num(n)} ÷ {_num(V)} = {_num(c)} mol/L."
    return q, body, c, _unit("mol/L"), [n * V, V / n, n, 2 * c]


def _c_solute(rng):
    V, c = rng.choice((50, 100, 200, 250, 400, 500, 750)), rng.choice((F("0.1"), F("0.2"), F("0.5"), F(1), F(2), F(3)))
    L = F(V, 1000)
    n = L * c
    q = f"How many moles of solute are in {V} mL of a {_num(c)} mol/L solution?"
    body = (f"Convert the volume to litres: {V} ÷ 1000 = {_num(L)} L. "
            f"Moles are volume times concentration: {_num(L)} × {_num(c)} = {_num(n)} mol.")
    return q, body, n, _unit("mol"), [V * c, F(c, L), n * 10, c]


def _c_dilution(rng):
    c1, v1 = rng.choice((2, 3, 4, 5, 6, 8, 10)), rng.choice((25, 50, 100, 200))
    k = rng.choice((2, 4, 5, 10))
    v2 = v1 * k
    c2 = F(c1 * v1, v2)
    q = (f"{v1} mL of a {c1} mol/L solution is diluted with water to a total volume of {v2} mL. "
         f"What is the new concentration?")
    body = (f"The moles of solute do not change, so c1 × V1 = c2 × V2. "
            f"The new concentration is {c1} × {v1} ÷ {v2} = {_num(c2)} mol/L.")
    return q, body, c2, _unit("mol/L"), [c1 * k, c1, c1 - c2, 2 * c2]


# (equation, {species: (coefficient, name)}) with reactants and products in one map.
_REACTIONS = (("2H2 + O2 → 2H2O", ("H2", 2, "hydrogen"), ("O2", 1, "oxygen"), ("H2O", 2, "water")),
              ("N2 + 3H2 → 2NH3", ("N2", 1, "nitrogen"), ("H2", 3, "hydrogen"), ("NH3", 2, "ammonia")),
              ("CH4 + 2O2 → CO2 + 2H2O", ("CH4", 1, "methane"), ("O2", 2, "oxygen"),
               ("CO2", 1, "carbon dioxide"), ("H2O", 2, "water")),
              ("2Mg + O2 → 2MgO", ("Mg", 2, "magnesium"), ("O2", 1, "oxygen"), ("MgO", 2, "magnesium oxide")),
              ("C3H8 + 5O2 → 3CO2 + 4H2O", ("C3H8", 1, "propane"), ("O2", 5, "oxygen"),
               ("CO2", 3, "carbon dioxide"), ("H2O", 4, "water")),
              ("2Na + Cl2 → 2NaCl", ("Na", 2, "sodium"), ("Cl2", 1, "chlorine"), ("NaCl", 2, "sodium chloride")))


def _c_stoich(rng):
    eq, *species = rng.choice(_REACTIONS)
    n_react = eq.split("→")[0].count("+") + 1
    (rf, rc, rn) = rng.choice(species[:n_react])
    (pf, pc, pn) = rng.choice(species[n_react:])
    x = rc * rng.randint(1, 6)  # a whole multiple of the coefficient keeps the answer whole
    y = F(x * pc, rc)
    q = (f"For the reaction {eq}, how many moles of {pn} ({pf}) form when {x} mol of {rn} ({rf}) "
         f"reacts completely with an excess of the other reactant?")
    body = (f"The balanced equation shows that {rc} mol of {rf} gives {pc} mol of {pf}. "
            f"So {x} mol of {rf} gives {x} × {pc} ÷ {rc} = {_num(y)} mol of {pf}.")
    return q, body, y, _unit("mol"), [F(x * rc, pc), x, x * pc, y + 1]


def _e_ohm(rng):
    i, r = rng.randint(1, 12), rng.randint(2, 100)
    v = i * r
    if rng.random() < 0.5:
        q = f"A current of {i} A flows through a {r} Ω resistor. What is the voltage across it?"
        body = f"Ohm's law gives voltage as current times resistance: {i} × {r} = {v} V."
        return q, body, v, _unit("V"), [F(r, i), i + r, 2 * v, v + r]
    q = f"A voltage of {v} V is applied across a {r} Ω resistor. What current flows?"
    body = f"From Ohm's law, current is voltage divided by resistance: {v} ÷ {r} = {i} A."
    return q, body, i, _unit("A"), [v * r, F(r, v), i + 1, 2 * i]


def _e_power(rng):
    v, i = rng.choice((6, 12, 24, 48, 110, 230)), rng.randint(1, 15)
    q = f"A device draws {i} A from a {v} V supply. What electrical power does it use?"
    body = f"Electrical power is voltage times current: {v} × {i} = {v * i} W."
    return q, body, v * i, _unit("W"), [F(v, i), v + i, 2 * v * i, v * i * i]


def _e_energy(rng):
    p, h = rng.choice((500, 750, 1000, 1200, 1500, 2000, 2500, 3000)), rng.randint(2, 10)
    kw = F(p, 1000)
    q = f"A {p} W heater runs for {h} hours. How much energy does it use, in kilowatt-hours?"
    body = (f"Convert the power to kilowatts: {p} ÷ 1000 = {_num(kw)} kW. "
            f"Energy is power times time: {_num(kw)} × {h} = {_num(kw * h)} kWh.")
    return q, body, kw * h, _unit("kWh"), [p * h, kw, kw * h * 10, F(kw, h)]


def _e_resistors(rng):
    if rng.random() < 0.5:
        rs = [rng.choice((5, 10, 15, 20, 22, 33, 47, 68, 100)) for _ in range(3)]
        tot = sum(rs)
        q = f"Resistors of {rs[0]} Ω, {rs[1]} Ω and {rs[2]} Ω are connected in series. What is the total resistance?"
        body = f"In series, resistances add: {rs[0]} + {rs[1]} + {rs[2]} = {tot} Ω."
        wrong = [F(1) / sum(F(1, r) for r in rs), max(rs), F(tot, 3), tot + 10]
        return q, body, tot, _unit("Ω"), wrong
    r1, r2 = rng.choice(((6, 3), (12, 6), (20, 5), (12, 4), (30, 15), (10, 10), (60, 30), (24, 8),
                         (40, 10), (18, 9), (36, 12), (30, 20), (90, 45), (15, 10)))
    prod, s = r1 * r2, r1 + r2
    r = F(prod, s)
    q = f"Two resistors of {r1} Ω and {r2} Ω are connected in parallel. What is their combined resistance?"
    body = (f"For two resistors in parallel, the combined resistance is product over sum. "
            f"The product is {r1} × {r2} = {prod} and the sum is {r1} + {r2} = {s}, so {prod} ÷ {s} = {_num(r)} Ω.")
    return q, body, r, _unit("Ω"), [s, F(s, 2), prod, r + 1]


def _e_gears(rng):
    while True:
        t1, t2, rpm = rng.choice((10, 12, 15, 16, 20, 24, 30)), rng.choice((20, 24, 30, 36, 40, 45, 48, 60)), rng.randrange(60, 1501, 30)
        if t1 != t2 and rpm * t1 % t2 == 0:
            break
    out = rpm * t1 // t2
    q = (f"A driving gear with {t1} teeth turns at {rpm} rpm and meshes with a driven gear that has "
         f"{t2} teeth. How fast does the driven gear turn?")
    body = (f"Meshing gears pass the same number of teeth per minute, so the speed scales by the "
            f"tooth ratio: {rpm} × {t1} ÷ {t2} = {out} rpm.")
    return q, body, out, _unit("rpm"), [F(rpm * t2, t1), rpm, out + 30, 2 * out]


def _e_efficiency(rng):
    eff = rng.choice((40, 50, 60, 65, 70, 75, 80, 85, 90, 95))
    while True:
        pin = rng.randrange(100, 5001, 100)
        if pin * eff % 100 == 0:
            break
    pout = pin * eff // 100
    q = f"A motor takes in {pin} W of electrical power and delivers {pout} W of mechanical power. What is its efficiency?"
    body = f"Efficiency is useful output divided by input: {pout} ÷ {pin} × 100 = {eff}%."
    return q, body, eff, _pct, [F(pin * 100, pout), 100 - eff, eff - 5, eff + 5]


def _e_stress(rng):
    s, A = rng.randrange(20, 401, 10), rng.choice((10, 20, 25, 40, 50, 80, 100, 200))
    f_ = s * A
    q = f"A steel rod with a cross-sectional area of {A} mm² carries a tensile force of {f_} N. What is the stress in the rod?"
    body = f"Stress is force divided by area: {f_} ÷ {A} = {s} N/mm², which is {s} MPa."
    return q, body, s, _unit("MPa"), [f_ * A, F(A, f_) * 1000, 2 * s, s + 10]


def _e_convert(rng):
    v = rng.choice(range(18, 217, 18))  # multiples of 3.6 km/h convert to whole m/s
    ms = F(v * 1000, 3600)
    q = f"A conveyor moves at {v} km/h. What is this speed in metres per second?"
    body = f"One km/h is 1000 m per 3600 s, so {v} × 1000 ÷ 3600 = {_num(ms)} m/s."
    return q, body, ms, _unit("m/s"), [v * F("3.6"), F(v, 60), v * 1000, ms + 5]


def _e_moment(rng):
    f_, d = rng.randrange(20, 1001, 10), F(rng.randint(1, 20), 4)
    m = f_ * d
    q = f"A force of {f_} N acts at right angles to a spanner, {_num(d)} m from the pivot. What is the turning moment?"
    body = f"The moment is force times perpendicular distance from the pivot: {f_} × {_num(d)} = {_num(m)} N·m."
    return q, body, m, _unit("N·m"), [f_ / d, f_ + d, 2 * m, m + 10]


_NUMERIC_TEMPLATES: dict[str, tuple[Callable, ...]] = {
    "arithmetic": (_a_add, _a_sub, _a_mul, _a_div, _a_order, _a_percent, _a_fraction, _a_square, _a_mean, _a_lcm),
    "business": (_b_simple_interest, _b_compound, _b_profit, _b_margin, _b_breakeven, _b_change, _b_markup),
    "physics": (_p_speed, _p_force, _p_weight, _p_kinetic, _p_work, _p_power, _p_density, _p_wave,
                _p_accel, _p_momentum, _p_gpe, _p_pressure),
    "chemistry": (_c_molar_mass, _c_moles, _c_molarity, _c_solute, _c_dilution, _c_stoich),
    "engineering": (_e_ohm, _e_power, _e_energy, _e_resistors, _e_gears, _e_efficiency, _e_stress,
                    _e_convert, _e_moment),
}


def _scale(v: F) -> F:
    """Power of ten just below ``v``: the step for 'nearby' distractors."""
    s = F(1)
    while s * 10 <= v:
        s *= 10
    while s > v:
        s /= 10
    return s


def _numeric_distractors(rng, value, fmt, mistakes, k) -> list[str]:
    """``k`` wrong options: typical slips first, then nearby values; each must print differently
    from the answer and be a positive, exactly printable number."""
    value = F(value)
    s = _scale(value)
    nearby = [value + s, value - s, value + 2 * s, value * 2, value / 2, value - 2 * s, value + 3 * s]
    rng.shuffle(nearby)
    nearby += [value + i * s for i in range(4, 9)]  # always distinct and positive: never runs dry
    right = fmt(value)
    out: list[str] = []
    for cand in list(mistakes) + nearby:
        cand = F(cand)
        if cand <= 0:
            continue
        try:
            text = fmt(cand)
        except ValueError:  # e.g. 1/3: not printable exactly, so not offered
            continue
        if text != right and text not in out:
            out.append(text)
        if len(out) == k:
            return out
    raise RuntimeError(f"not enough distractors for {right}")
