"""Physics items: speed, force, weight, kinetic and potential energy, work, power, density, waves,
acceleration, momentum and pressure, from the one formula each names."""

from __future__ import annotations

from fractions import Fraction as F

from stsflow.data.builtin.common import _num
from stsflow.data.builtin.numeric.formats import _unit


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


# in the order domain_items cycles through them (changing it changes the drawn items)
TEMPLATES = (_p_speed, _p_force, _p_weight, _p_kinetic, _p_work, _p_power, _p_density, _p_wave,
             _p_accel, _p_momentum, _p_gpe, _p_pressure)
