"""The built-in SFT set ``sft_math``: arithmetic word problems with worked, numbered solutions
(LIMO schema), the fine-tuning set whose effect on every domain the default run predicts."""

from __future__ import annotations

import random
from math import gcd
from typing import Callable

from stsflow.data.builtin.common import _coprime_fraction, _num, _person

# ----------------------------------------------------------------------------------------------
# SFT math: word problems with worked solutions (LIMO schema)
#
# Each template returns (question, steps, answer, params). ``params`` hold the drawn quantities so
# the tests can recompute the answer with their own formula, independently of the solution text.

_SHOP_ITEMS = (("notebook", "notebooks", 2, 6), ("sandwich", "sandwiches", 4, 9),
               ("comic book", "comic books", 3, 8), ("bag of rice", "bags of rice", 3, 12),
               ("box of pencils", "boxes of pencils", 2, 5), ("T-shirt", "T-shirts", 6, 15),
               ("jar of honey", "jars of honey", 4, 11), ("packet of seeds", "packets of seeds", 1, 4))
_SHOP_EXTRAS = (("bottle of juice", 2, 4), ("pen", 1, 3), ("magazine", 3, 6), ("loaf of bread", 2, 5),
                ("bunch of flowers", 5, 9), ("roll of tape", 1, 3))


def _m_shopping(rng):
    p = _person(rng)
    sg, pl, lo, hi = rng.choice(_SHOP_ITEMS)
    extra, elo, ehi = rng.choice(_SHOP_EXTRAS)
    while True:  # one note must cover the bill
        qty, price, extra_price = rng.randint(2, 9), rng.randint(lo, hi), rng.randint(elo, ehi)
        cost = qty * price
        total = cost + extra_price
        if total < 100:
            break
    bill = rng.choice([b for b in (10, 20, 50, 100) if b > total][:2])  # a note a shopper would use
    change = bill - total
    q = (f"{p.name} buys {qty} {pl} at ${price} each and one {extra} for ${extra_price}. "
         f"{p.He} pays with a ${bill} note. How much change, in dollars, should {p.name} get back?")
    steps = [f"Find the cost of the {pl}: {qty} × ${price} = ${cost}.",
             f"Add the {extra}: ${cost} + ${extra_price} = ${total}.",
             f"Subtract the total from the money paid: ${bill} - ${total} = ${change}."]
    return q, steps, change, dict(qty=qty, price=price, extra=extra_price, bill=bill)


_VEHICLES = (("train", 60, 120), ("bus", 40, 80), ("truck", 50, 90), ("ferry", 20, 40),
             ("delivery van", 30, 70))
_PLACES = ("a lake", "the beach", "a farm market", "a nature park", "a friend's house", "the library")


def _m_travel(rng):
    if rng.random() < 0.5:
        veh, lo, hi = rng.choice(_VEHICLES)
        v1, v2 = rng.randrange(lo, hi + 1, 5), rng.randrange(lo, hi + 1, 5)
        t1, t2 = rng.randint(1, 5), rng.randint(1, 4)
        d1, d2 = v1 * t1, v2 * t2
        q = (f"A {veh} travels at {v1} km per hour for {t1} hours and then at {v2} km per hour "
             f"for {t2} hours. How many kilometres does the {veh} travel in total?")
        steps = ["Distance equals speed multiplied by time.",
                 f"In the first part it covers {v1} × {t1} = {d1} km.",
                 f"In the second part it covers {v2} × {t2} = {d2} km.",
                 f"Altogether it travels {d1} + {d2} = {d1 + d2} km."]
        return q, steps, d1 + d2, dict(variant="legs", v1=v1, t1=t1, v2=v2, t2=t2)
    p = _person(rng)
    v, h = rng.randint(8, 20), rng.randint(1, 4)
    d = v * h
    q = (f"{p.name} cycles from home to {rng.choice(_PLACES)}, which is {d} km away, at a steady "
         f"{v} km per hour, and then rides back home at the same speed. How many hours does "
         f"{p.name} spend cycling in total?")
    steps = [f"The round trip is 2 × {d} = {2 * d} km.",
             "Time equals distance divided by speed.",
             f"At {v} km per hour the trip takes {2 * d} ÷ {v} = {2 * h} hours."]
    return q, steps, 2 * h, dict(variant="round_trip", d=d, v=v)


def _m_ages(rng):
    if rng.random() < 0.5:
        while True:  # keep the parent's age believable
            m, a = rng.randint(3, 7), rng.randint(3, 14)
            if 24 <= m * a <= 70:
                break
        parent = _person(rng)
        child = _person(rng, exclude=(parent.name,))
        rel = rng.choice(("daughter", "niece") if child.he == "she" else ("son", "nephew"))
        k = rng.randint(2, 15)
        x = m * a
        q = (f"{parent.name} is {m} times as old as {parent.his} {rel} {child.name}. {child.name} "
             f"is {a} years old today. How old will {parent.name} be in {k} years?")
        steps = [f"{parent.name} is now {m} × {a} = {x} years old.",
                 f"In {k} years, {parent.name} will be {x} + {k} = {x + k} years old."]
        return q, steps, x + k, dict(variant="times", m=m, a=a, k=k)
    older = _person(rng)
    younger = _person(rng, exclude=(older.name,))
    sib = rng.choice(("sister", "cousin") if younger.he == "she" else ("brother", "cousin"))
    y, d = rng.randint(3, 30), rng.randint(1, 12)
    s = 2 * y + d
    q = (f"{older.name} is {d} years older than {older.his} {sib} {younger.name}. Right now their "
         f"two ages add up to {s} years. How old is {older.name} now?")
    steps = [f"Take the age difference away from the total: {s} - {d} = {2 * y}. "
             f"This is twice {younger.name}'s age.",
             f"So {younger.name} is {2 * y} ÷ 2 = {y} years old.",
             f"{older.name} is {y} + {d} = {y + d} years old."]
    return q, steps, y + d, dict(variant="sum", s=s, d=d)


def _m_geometry(rng):
    if rng.random() < 0.5:
        place = rng.choice(("garden", "yard", "sheep paddock", "playground", "vegetable plot"))
        L, W, c = rng.randint(8, 40), rng.randint(4, 25), rng.randint(3, 12)
        perim = 2 * L + 2 * W
        q = (f"A rectangular {place} is {L} metres long and {W} metres wide. Fencing costs ${c} per "
             f"metre. How much will it cost, in dollars, to put a fence around the whole {place}?")
        steps = [f"The perimeter is twice the length plus twice the width: 2 × {L} + 2 × {W} = {perim} metres.",
                 f"The fence costs {perim} × ${c} = ${perim * c}."]
        return q, steps, perim * c, dict(variant="fence", L=L, W=W, c=c)
    p = _person(rng)
    room = rng.choice(("kitchen floor", "bathroom floor", "patio", "hallway floor", "classroom floor"))
    while True:  # whole boxes only
        L, W, b = rng.randint(3, 9), rng.randint(2, 7), rng.choice((2, 3, 4, 5, 6))
        if (L * W) % b == 0:
            break
    q = (f"{p.name} wants to tile a rectangular {room} that measures {L} metres by {W} metres. "
         f"One box of tiles covers {b} square metres. How many boxes of tiles does {p.he} need?")
    steps = [f"The area is {L} × {W} = {L * W} square metres.",
             f"The number of boxes is {L * W} ÷ {b} = {L * W // b}."]
    return q, steps, L * W // b, dict(variant="tiles", L=L, W=W, b=b)




def _m_fraction(rng):
    n, d = _coprime_fraction(rng)
    u = rng.randint(3, 15)
    N = u * d
    g = u * n
    kind = rng.randrange(3)
    if kind == 0:
        p = _person(rng)
        friend = _person(rng, exclude=(p.name,))
        things = rng.choice(("stickers", "marbles", "trading cards", "stamps", "seashells"))
        q = (f"{p.name} has a collection of {N} {things}. {p.He} gives {n}/{d} of them to "
             f"{p.his} friend {friend.name} and keeps the rest. How many {things} does {p.name} keep?")
        rest = f"{p.name} keeps"
    elif kind == 1:
        a, b = rng.choice((("sheep", "goats"), ("chickens", "ducks"), ("cows", "horses"), ("rabbits", "geese")))
        q = (f"A small farm has {N} animals in total. Exactly {n}/{d} of the animals are {a} and all "
             f"the others are {b}. How many {b} are there on the farm?")
        rest = f"The number of {b} is"
    else:
        q = (f"There are {N} students in a school chess club. {n}/{d} of them walk to the weekly "
             f"meeting and the rest come by bus. How many students come by bus?")
        rest = "The number who come by bus is"
    if n == 1:
        first = f"To find 1/{d} of {N}, divide by {d}: {N} ÷ {d} = {u}."
    else:
        first = f"To find {n}/{d} of {N}, divide by {d} and multiply by {n}: {N} ÷ {d} = {u}, and {u} × {n} = {g}."
    steps = [first, f"{rest} {N} - {g} = {N - g}."]
    return q, steps, N - g, dict(N=N, n=n, d=d)


def _m_percent(rng):
    rates = (10, 15, 20, 25, 30, 40, 50)
    if rng.random() < 0.5:
        p = _person(rng)
        item = rng.choice(("jacket", "bicycle", "lamp", "pair of boots", "backpack", "tennis racket"))
        while True:
            price, r = rng.randrange(20, 401, 5), rng.choice(rates)
            if price * r % 100 == 0:
                break
        ship = rng.randint(3, 15)
        disc = price * r // 100
        q = (f"A {item} normally costs ${price}. In a sale, the shop takes {r}% off the price, and "
             f"{p.name} also pays ${ship} for delivery. How much does {p.name} pay in total, in dollars?")
        steps = [f"The discount is {r}% of ${price}: ${price} × {r} ÷ 100 = ${disc}.",
                 f"The sale price is ${price} - ${disc} = ${price - disc}.",
                 f"Adding delivery: ${price - disc} + ${ship} = ${price - disc + ship}."]
        return q, steps, price - disc + ship, dict(variant="sale", price=price, r=r, ship=ship)
    activity = rng.choice(("play a musical instrument", "take part in a team sport", "sing in a choir",
                           "belong to the science club"))
    while True:
        N, r = rng.randrange(200, 1201, 20), rng.choice(rates + (5, 35, 45, 60))
        if N * r % 100 == 0:
            break
    k = N * r // 100
    q = (f"A school has {N} students. A survey finds that {r}% of them {activity}. How many "
         f"students in the school do not {activity}?")
    steps = [f"{r}% of {N} is {N} × {r} ÷ 100 = {k} students.",
             f"The students who do not are {N} - {k} = {N - k}."]
    return q, steps, N - k, dict(variant="survey", N=N, r=r)


_PRODUCERS = (("A bakery", "bakes", "tray", "trays", "muffins", "a food bank"),
              ("A farm", "packs", "carton", "cartons", "eggs", "a food bank"),
              ("A toy factory", "fills", "box", "boxes", "toy cars", "a children's hospital"),
              ("A juice company", "fills", "crate", "crates", "bottles of juice", "a local school"),
              ("A garden centre", "plants", "tray", "trays", "seedlings", "a community garden"))


def _m_production(rng):
    place, verb, csg, cpl, things, charity = rng.choice(_PRODUCERS)
    t, m, d = rng.randint(3, 20), rng.randint(6, 30), rng.randint(2, 7)
    a = t * m
    u = rng.randint(1, max(1, a // 5))
    q = (f"{place} {verb} {t} {cpl} every day, with {m} {things} in each {csg}. Each day it gives "
         f"{u} {things} to {charity} and sells the rest. How many {things} does it sell in {d} days?")
    steps = [f"Each day it makes {t} × {m} = {a} {things}.",
             f"It sells {a} - {u} = {a - u} {things} per day.",
             f"In {d} days it sells {a - u} × {d} = {(a - u) * d} {things}."]
    return q, steps, (a - u) * d, dict(t=t, m=m, u=u, d=d)


def _m_units(rng):
    kind = rng.randrange(4)
    p = _person(rng)
    if kind == 0:
        while True:
            m, c, piece = rng.randint(1, 9), rng.randrange(5, 100, 5), rng.choice((10, 15, 20, 25, 30, 40, 50))
            if (100 * m + c) % piece == 0:
                break
        L = 100 * m + c
        q = (f"{p.name} has a rope that is {m} metres and {c} centimetres long. {p.He} cuts it into "
             f"pieces that are each {piece} centimetres long. How many pieces does {p.he} get?")
        steps = [f"Convert the length to centimetres: {m} × 100 = {100 * m} cm, and {100 * m} + {c} = {L} cm.",
                 f"The number of pieces is {L} ÷ {piece} = {L // piece}."]
        return q, steps, L // piece, dict(variant="rope", m=m, c=c, piece=piece)
    if kind == 1:
        while True:
            k, g = rng.randint(1, 10), rng.choice((125, 200, 250, 400, 500))
            if 1000 * k % g == 0:
                break
        q = (f"A baker has a {k} kg bag of flour. Each loaf of bread uses {g} grams of flour. "
             f"How many loaves can the baker make if the whole bag is used?")
        steps = [f"{k} kg is {k} × 1000 = {1000 * k} grams.",
                 f"The number of loaves is {1000 * k} ÷ {g} = {1000 * k // g}."]
        return q, steps, 1000 * k // g, dict(variant="flour", k=k, g=g)
    if kind == 2:
        while True:
            h, m = rng.randint(2, 9), rng.choice((12, 15, 18, 20, 24, 30, 36, 40, 45))
            if 60 * h % m == 0:
                break
        q = (f"A film club shows short films one after another for {h} hours without a break. "
             f"Each film lasts {m} minutes. How many films does the club show?")
        steps = [f"{h} hours is {h} × 60 = {60 * h} minutes.",
                 f"The number of films is {60 * h} ÷ {m} = {60 * h // m}."]
        return q, steps, 60 * h // m, dict(variant="films", h=h, m=m)
    while True:
        L, g = rng.randint(2, 12), rng.choice((150, 200, 250, 300, 400, 500))
        if 1000 * L % g == 0:
            break
    q = (f"{p.name} makes {L} litres of lemonade for a party. Each glass holds {g} millilitres. "
         f"How many glasses can {p.he} fill with all of the lemonade?")
    steps = [f"{L} litres is {L} × 1000 = {1000 * L} millilitres.",
             f"The number of glasses is {1000 * L} ÷ {g} = {1000 * L // g}."]
    return q, steps, 1000 * L // g, dict(variant="lemonade", L=L, g=g)


def _m_work(rng):
    kind = rng.randrange(3)
    p = _person(rng)
    if kind < 2:
        r, k, t = rng.randint(2, 60), rng.randint(2, 6), rng.randint(2, 15)
        R = r * k
        N = R * t
        if kind == 0:
            q = (f"One machine in a factory fills {r} bottles per minute. How many minutes will "
                 f"{k} of these machines, working together, take to fill {N} bottles?")
            unit, what = "bottles per minute", "minutes"
        else:
            q = (f"A painter can paint {r} square metres of wall in one hour. {p.name} hires {k} "
                 f"painters who all work at this rate. How many hours will they need to paint "
                 f"{N} square metres?")
            unit, what = "square metres per hour", "hours"
        steps = [f"Together they manage {r} × {k} = {R} {unit}.",
                 f"The time needed is {N} ÷ {R} = {t} {what}."]
        return q, steps, t, dict(variant="team", r=r, k=k, N=N)
    w, t, b = rng.choice((20, 25, 30, 40, 45, 50, 60)), rng.randint(5, 40), rng.randint(5, 20)
    N = w * t
    q = (f"{p.name} types at {w} words per minute. {p.He} must type an essay of {N} words and "
         f"takes one break of {b} minutes. How many minutes does the whole task take?")
    steps = [f"Typing takes {N} ÷ {w} = {t} minutes.",
             f"With the break the task takes {t} + {b} = {t + b} minutes."]
    return q, steps, t + b, dict(variant="typing", N=N, w=w, b=b)


def _m_average(rng):
    p = _person(rng)
    if rng.random() < 0.5:
        subject = rng.choice(("maths", "spelling", "science", "history", "geography"))
        while True:
            xs = [rng.randint(55, 100) for _ in range(4)]
            if sum(xs) % 4 == 0:
                break
        a, b, c, d = xs
        q = (f"On four {subject} tests this term, {p.name} scored {a}, {b}, {c} and {d} points. "
             f"What is {p.his} average (mean) score across the four tests?")
        steps = [f"Add the scores: {a} + {b} + {c} + {d} = {sum(xs)}.",
                 f"Divide by the number of tests: {sum(xs)} ÷ 4 = {sum(xs) // 4}."]
        return q, steps, sum(xs) // 4, dict(variant="mean", xs=xs)
    while True:
        a, b, c, x = (rng.randint(3, 12) for _ in range(4))
        if (a + b + c + x) % 4 == 0:
            break
    m = (a + b + c + x) // 4
    q = (f"{p.name} ran {a} km on Monday, {b} km on Tuesday and {c} km on Wednesday. How many "
         f"kilometres must {p.he} run on Thursday to average {m} km per day over the four days?")
    steps = [f"To average {m} km over 4 days, the total must be {m} × 4 = {4 * m} km.",
             f"So far {p.he} has run {a} + {b} + {c} = {a + b + c} km.",
             f"On Thursday {p.he} must run {4 * m} - {a + b + c} = {x} km."]
    return q, steps, x, dict(variant="target", a=a, b=b, c=c, m=m)


def _m_savings(rng):
    p = _person(rng)
    thing = rng.choice(("bicycle", "guitar", "tablet", "telescope", "pair of skates", "camera"))
    w, n, S = rng.choice((5, 8, 10, 12, 15, 20, 25)), rng.randint(3, 20), rng.randrange(5, 100, 5)
    C = S + w * n
    q = (f"{p.name} wants to buy a {thing} that costs ${C}. {p.He} has already saved ${S} and adds "
         f"${w} to {p.his} savings every week. How many weeks will it take until {p.he} has exactly enough?")
    steps = [f"{p.name} still needs ${C} - ${S} = ${C - S}.",
             f"At ${w} a week this takes {C - S} ÷ {w} = {n} weeks."]
    return q, steps, n, dict(C=C, S=S, w=w)


# (setting, what the ratio compares, what the total counts, what is asked, who makes up the 2nd share)
_RATIOS = (("A bag holds only red and blue marbles", "red marbles to blue marbles", "marbles in the bag",
            "blue marbles", "The blue marbles make up"),
           ("A painter mixes white paint and blue paint", "white paint to blue paint", "litres of paint",
            "litres of blue paint", "The blue paint makes up"),
           ("A chess club has girls and boys as members", "girls to boys", "members", "boys",
            "The boys make up"),
           ("A fruit basket contains only apples and pears", "apples to pears", "pieces of fruit", "pears",
            "The pears make up"))


def _m_ratio(rng):
    intro, pair, total_word, ask, share = rng.choice(_RATIOS)
    while True:
        a, b = rng.randint(1, 7), rng.randint(1, 7)
        if a != b and gcd(a, b) == 1:
            break
    u = rng.randint(2, 15)
    N = (a + b) * u
    q = (f"{intro}, and the ratio of {pair} is {a}:{b}. There are {N} {total_word} altogether. "
         f"How many {ask} are there?")
    steps = [f"The ratio has {a} + {b} = {a + b} equal parts.",
             f"Each part is {N} ÷ {a + b} = {u}.",
             f"{share} {b} parts: {u} × {b} = {u * b}."]
    return q, steps, u * b, dict(a=a, b=b, N=N)


def _m_interest(rng):
    p = _person(rng)
    while True:
        P, r, t = rng.randrange(200, 5001, 100), rng.choice((2, 3, 4, 5, 6, 8, 10)), rng.randint(2, 6)
        if P * r % 100 == 0:
            break
    y = P * r // 100
    q = (f"{p.name} puts ${P} into a savings account that pays {r}% simple interest each year. "
         f"How much money, in dollars, will be in the account after {t} years?")
    steps = [f"One year of interest is ${P} × {r} ÷ 100 = ${y}.",
             f"Over {t} years the interest is ${y} × {t} = ${y * t}.",
             f"The balance is ${P} + ${y * t} = ${P + y * t}."]
    return q, steps, P + y * t, dict(P=P, r=r, t=t)


_WARES = ("melons", "mangoes", "clay pots", "umbrellas", "lamps", "baskets")


def _m_profit(rng):
    items = rng.choice(_WARES)
    while True:
        n, c = rng.randint(20, 120), rng.randint(2, 20)
        pr, k = c + rng.randint(1, max(2, c)), rng.randint(1, max(1, n // 8))  # at most double the cost
        if (n - k) * pr > n * c:  # the question asks for a profit, so make one
            break
    cost, left = n * c, n - k
    q = (f"A market vendor buys {n} {items} for ${c} each. {k} of them are damaged and cannot be "
         f"sold, and the vendor sells all the others for ${pr} each. How much profit, in dollars, "
         f"does the vendor make?")
    steps = [f"The {items} cost {n} × ${c} = ${cost}.",
             f"The vendor can sell {n} - {k} = {left} {items}.",
             f"Sales bring in {left} × ${pr} = ${left * pr}.",
             f"The profit is ${left * pr} - ${cost} = ${left * pr - cost}."]
    return q, steps, left * pr - cost, dict(n=n, c=c, k=k, pr=pr)


_MATH_TEMPLATES: dict[str, Callable] = {
    "shopping": _m_shopping, "travel": _m_travel, "ages": _m_ages, "geometry": _m_geometry,
    "fraction": _m_fraction, "percent": _m_percent, "production": _m_production, "units": _m_units,
    "work": _m_work, "average": _m_average, "savings": _m_savings, "ratio": _m_ratio,
    "interest": _m_interest, "profit": _m_profit,
}


def _math_cases(n: int = 400, seed: int = 0) -> list[tuple[dict, str, dict]]:
    """(record, template kind, drawn parameters) for each problem; ``sft_math`` keeps the records."""
    rng = random.Random(seed)
    kinds = list(_MATH_TEMPLATES)
    out, seen = [], set()
    attempts = 0
    while len(out) < n:
        attempts += 1
        if attempts > 50 * n:
            raise RuntimeError("could not draw enough distinct math problems")
        kind = kinds[len(out) % len(kinds)]  # round robin keeps every template equally represented
        q, steps, answer, params = _MATH_TEMPLATES[kind](rng)
        if q in seen:
            continue
        seen.add(q)
        solution = "\n".join(f"Step {i}: {s}" for i, s in enumerate(steps, 1))
        solution += f"\nThe answer is {_num(answer)}."
        rec = {"id": f"math-{len(out) + 1:04d}", "question": q, "solution": solution, "answer": _num(answer)}
        out.append((rec, kind, params))
    return out


def sft_math(n: int = 400, seed: int = 0) -> list[dict]:
    """``n`` distinct math word problems with worked solutions, in the LIMO schema."""
    return [rec for rec, _, _ in _math_cases(n, seed)]
