"""Engineering items: Ohm's law, electrical power and energy, resistor networks, gears, efficiency,
stress, unit conversion and turning moments."""

from __future__ import annotations

from fractions import Fraction as F

from stsflow.data.builtin.common import _num
from stsflow.data.builtin.numeric.formats import _pct, _unit


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


# in the order domain_items cycles through them (changing it changes the drawn items)
TEMPLATES = (_e_ohm, _e_power, _e_energy, _e_resistors, _e_gears, _e_efficiency, _e_stress,
             _e_convert, _e_moment)
