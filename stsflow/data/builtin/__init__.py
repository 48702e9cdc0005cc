"""Built-in default data: deterministic generators written for this project.

Two kinds of corpora, in the two record schemas of ``stsflow.corpora``:

* ``sft_math``: arithmetic word problems with worked, numbered solutions (LIMO schema). This is the
  fine-tuning set whose effect on every domain the workflow predicts and measures.
* ``domain_items(name)``: multiple-choice items (MMLU-Pro schema) for ``DOMAINS``. Some domains
  need the same kind of computation as the SFT set (arithmetic, business, physics, chemistry,
  engineering), others only recalled knowledge (biology, history, law, philosophy, psychology), so
  the default run has both near and far domains.

Everything is drawn from ``random.Random`` seeded explicitly, so the same seed gives the same
records (and, through ``write_default_data``, the same bytes). All numbers in worked solutions are
exact: every computation is written as ``a op b = c`` with bare numbers, so the tests can re-evaluate
each equation, and the last equation of a solution always yields its answer. The texts are short and
plainly worded, because the model reading them is small (SmolLM2-135M-Instruct).
"""

from __future__ import annotations

import json
import random
from decimal import Decimal
from fractions import Fraction
from math import gcd
from pathlib import Path
from typing import Callable, NamedTuple

from stsflow.text.prompts import LETTERS

__all__ = ["DOMAINS", "NUMERIC_DOMAINS", "KNOWLEDGE_DOMAINS", "sft_math", "domain_items",
           "write_default_data"]

NUMERIC_DOMAINS = ("arithmetic", "business", "physics", "chemistry", "engineering")
KNOWLEDGE_DOMAINS = ("biology", "history", "law", "philosophy", "psychology")
DOMAINS = NUMERIC_DOMAINS + KNOWLEDGE_DOMAINS


# ----------------------------------------------------------------------------------------------
# Shared helpers

def _num(x) -> str:
    """Exact decimal text of a number; refuses values without a finite decimal expansion, so a
    solution never shows a rounded figure as if it were exact."""
    x = Fraction(x)
    if x.denominator == 1:
        return str(x.numerator)
    d = x.denominator
    for p in (2, 5):
        while d % p == 0:
            d //= p
    if d != 1:
        raise ValueError(f"{x} has no finite decimal form")
    return format(Decimal(x.numerator) / Decimal(x.denominator), "f").rstrip("0").rstrip(".")


def _cap(s: str) -> str:
    return s[:1].upper() + s[1:]


# Names from many cultures, with the pronoun the text uses for each.
_PEOPLE = (
    ("Maya", "she"), ("Liam", "he"), ("Aisha", "she"), ("Carlos", "he"), ("Mei", "she"),
    ("Noah", "he"), ("Priya", "she"), ("Kwame", "he"), ("Sofia", "she"), ("Hiroshi", "he"),
    ("Fatima", "she"), ("Lucas", "he"), ("Elena", "she"), ("Omar", "he"), ("Grace", "she"),
    ("Mateo", "he"), ("Zara", "she"), ("Ethan", "he"), ("Amara", "she"), ("Ravi", "he"),
    ("Chloe", "she"), ("Diego", "he"), ("Nadia", "she"), ("Samuel", "he"), ("Ingrid", "she"),
    ("Tariq", "he"), ("Lucia", "she"), ("Jonas", "he"), ("Yuki", "she"), ("Daniel", "he"),
    ("Leila", "she"), ("Kofi", "he"), ("Hannah", "she"), ("Arjun", "he"), ("Rosa", "she"),
    ("Felix", "he"),
)


class _Who(NamedTuple):
    name: str
    he: str   # subject pronoun
    his: str  # possessive

    @property
    def He(self) -> str:  # noqa: N802 - reads naturally in templates
        return _cap(self.he)


def _person(rng: random.Random, exclude: tuple[str, ...] = ()) -> _Who:
    name, he = rng.choice([p for p in _PEOPLE if p[0] not in exclude])
    return _Who(name, he, "her" if he == "she" else "his")


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


def _coprime_fraction(rng):
    while True:
        d = rng.randint(3, 8)
        n = rng.randint(1, d - 1)
        if gcd(n, d) == 1:
            return n, d


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


# ----------------------------------------------------------------------------------------------
# Knowledge domains: banks of facts written for this project. A group maps keys to values (a
# person to an idea, an event to a year...). A forward question gives the key and asks for the
# value; a reverse question (where the mapping is one-to-one) gives the value and asks for the
# key. Distractors come from the same group, so they are of the right kind but wrong.

class _Group(NamedTuple):
    forward: str             # uses {key}
    reverse: str | None      # uses {value}; None when several keys share a value
    facts: tuple             # (key, value, explanation)


class _Single(NamedTuple):
    question: str
    answer: str
    distractors: tuple
    explanation: str


_BANKS: dict[str, tuple] = {
    "biology": (
        _Group("In a plant cell, what is the main role of {key}?",
               "Which part of a plant cell is mainly responsible for {value}?", (
            ("the mitochondrion", "releasing energy from food as ATP through cellular respiration",
             "Mitochondria carry out aerobic cellular respiration, which breaks down sugars and stores the released energy as ATP."),
            ("the ribosome", "joining amino acids together to build proteins",
             "Ribosomes read messenger RNA and link amino acids in the right order, so they are where proteins are made."),
            ("the chloroplast", "capturing light energy to make sugar by photosynthesis",
             "Chloroplasts contain the green pigment chlorophyll, which absorbs light; they use that energy to make sugar from carbon dioxide and water."),
            ("the nucleus", "holding the chromosomes and controlling the cell's activities",
             "The nucleus contains the chromosomes, which carry the cell's DNA, and it controls which genes are used."),
            ("the cell membrane", "controlling which substances enter and leave the cell",
             "The cell membrane is a thin, selectively permeable layer of lipids and proteins that controls what passes into and out of the cell."),
            ("the Golgi apparatus", "modifying, sorting and packaging proteins for transport",
             "The Golgi apparatus receives proteins from the endoplasmic reticulum, modifies them and packages them into vesicles for transport."),
            ("the cell wall", "giving the cell a rigid shape and support",
             "Outside the membrane, plant cells have a cell wall made mainly of cellulose, which keeps the cell rigid and supports the plant."),
            ("the central vacuole", "storing water and keeping the cell firm",
             "The large central vacuole stores water and dissolved substances; when it is full it presses outward and keeps the cell firm."),
        )),
        _Group("What is the main job of {key} in the human body?",
               "Which organ of the human body is mainly responsible for {value}?", (
            ("the heart", "pumping blood around the body",
             "The heart is a muscular pump; its contractions push blood through the arteries to every part of the body."),
            ("the lungs", "exchanging oxygen and carbon dioxide between the air and the blood",
             "In the tiny air sacs of the lungs, oxygen passes from the air into the blood and carbon dioxide passes out to be breathed away."),
            ("the kidneys", "filtering waste from the blood to make urine",
             "The kidneys filter the blood, removing wastes such as urea and extra water, which leave the body as urine."),
            ("the liver", "making bile and breaking down toxins",
             "The liver produces bile, which helps digest fats, and breaks down harmful substances such as alcohol."),
            ("the stomach", "mixing food with acid and enzymes to begin digesting protein",
             "The stomach churns food with hydrochloric acid and the enzyme pepsin, which starts the digestion of proteins."),
            ("the small intestine", "absorbing most of the nutrients from digested food",
             "The small intestine is lined with villi that give it a huge surface area for absorbing digested nutrients into the blood."),
            ("the large intestine", "absorbing water from undigested food",
             "By the time food reaches the large intestine most nutrients have been absorbed; it takes up water and forms the remaining waste into faeces."),
            ("the pancreas", "releasing insulin and digestive enzymes",
             "The pancreas releases digestive enzymes into the small intestine and hormones such as insulin into the blood to control blood sugar."),
            ("the skin", "forming a protective barrier against germs and water loss",
             "The skin covers the body and acts as a barrier that keeps out germs and stops the body from losing too much water."),
        )),
        _Group("To which class of vertebrates does {key} belong?", None, (
            ("a whale", "mammals",
             "Whales breathe air with lungs, are warm-blooded and feed their young on milk, so they are mammals even though they live in water."),
            ("a bat", "mammals",
             "Bats have fur, give birth to live young and feed them milk, so they are mammals; they are the only mammals capable of true flight."),
            ("a platypus", "mammals",
             "The platypus lays eggs, but it has fur and feeds its young on milk, so it is classed as a mammal."),
            ("a penguin", "birds",
             "Penguins cannot fly, but they have feathers and a beak and lay hard-shelled eggs, so they are birds."),
            ("an ostrich", "birds",
             "The ostrich is the largest living bird; it cannot fly, but it has feathers, a beak and wings."),
            ("a crocodile", "reptiles",
             "Crocodiles have dry, scaly skin, breathe with lungs and lay shelled eggs on land, so they are reptiles."),
            ("a sea turtle", "reptiles",
             "Sea turtles are reptiles: they have scales, breathe air and return to land to lay their eggs."),
            ("a frog", "amphibians",
             "Frogs begin life as tadpoles that live in water and breathe with gills, then become adults that breathe with lungs and skin, which is typical of amphibians."),
            ("a salamander", "amphibians",
             "Salamanders have moist skin without scales and usually lay their eggs in water, so they are amphibians, not reptiles."),
            ("a shark", "fish",
             "Sharks live in water, breathe with gills and have fins; they are fish whose skeletons are made of cartilage."),
            ("a seahorse", "fish",
             "Despite its unusual shape, the seahorse breathes with gills and has fins, so it is a fish."),
        )),
        _Group('In biology, what does the term "{key}" mean?', "Which biological term means {value}?", (
            ("gene", "a section of DNA that carries the instructions for a product such as a protein",
             "A gene is a length of DNA at a particular place on a chromosome; its sequence codes for a product, usually a protein."),
            ("allele", "one of the different versions of the same gene",
             "Alleles are alternative forms of one gene, such as the versions that give different flower colours in pea plants."),
            ("genotype", "the combination of alleles an organism carries",
             "The genotype is the genetic make-up for a trait, for example one dominant and one recessive allele."),
            ("phenotype", "the observable characteristics of an organism",
             "The phenotype is what can be seen or measured, such as eye colour or height, and results from the genotype and the environment."),
            ("mitosis", "cell division that produces two genetically identical cells",
             "In mitosis a cell copies its chromosomes and divides once, giving two daughter cells identical to the parent; it is used for growth and repair."),
            ("meiosis", "cell division that produces sex cells with half the number of chromosomes",
             "Meiosis involves two divisions and produces four sex cells, each with half the chromosome number of the original cell."),
            ("enzyme", "a protein that speeds up a chemical reaction without being used up",
             "Enzymes are biological catalysts: proteins that lower the energy needed for a reaction and can be used again."),
            ("osmosis", "the movement of water across a partially permeable membrane",
             "Osmosis is the net movement of water through a partially permeable membrane from a dilute solution to a more concentrated one."),
            ("homeostasis", "keeping conditions inside the body stable",
             "Homeostasis is the regulation of internal conditions, such as body temperature and blood sugar, within narrow limits."),
            ("photosynthesis", "the process that uses light energy to make sugar from carbon dioxide and water",
             "In photosynthesis, plants and algae use light energy to turn carbon dioxide and water into glucose, releasing oxygen."),
        )),
    ),
    "history": (
        _Group("In which year did {key} take place?", "Which of these events took place in {value}?", (
            ("the Battle of Hastings", "1066",
             "The Battle of Hastings was fought in 1066, when William of Normandy defeated King Harold II and began the Norman conquest of England."),
            ("the sealing of Magna Carta by King John", "1215",
             "King John of England agreed to Magna Carta at Runnymede in 1215; it placed limits on the power of the king."),
            ("the fall of Constantinople to the Ottoman Turks", "1453",
             "The Ottoman sultan Mehmed II captured Constantinople in 1453, ending the Byzantine Empire."),
            ("Christopher Columbus's first landing in the Americas", "1492",
             "Sailing for Spain, Christopher Columbus reached islands in the Caribbean in 1492."),
            ("Vasco da Gama's arrival in India by sea", "1498",
             "The Portuguese navigator Vasco da Gama reached Calicut in India in 1498, opening a sea route from Europe around Africa."),
            ("the adoption of the United States Declaration of Independence", "1776",
             "The Continental Congress adopted the Declaration of Independence on 4 July 1776."),
            ("the storming of the Bastille in Paris", "1789",
             "Crowds stormed the Bastille prison in Paris on 14 July 1789, an early event of the French Revolution."),
            ("the Battle of Waterloo", "1815",
             "Napoleon was finally defeated at Waterloo, in present-day Belgium, in 1815."),
            ("the sinking of the Titanic", "1912",
             "The Titanic struck an iceberg and sank on its first voyage in April 1912."),
            ("the outbreak of the First World War", "1914",
             "The First World War broke out in 1914, weeks after the assassination of Archduke Franz Ferdinand in Sarajevo."),
            ("the October Revolution in Russia", "1917",
             "In the October Revolution of 1917, the Bolsheviks led by Lenin seized power in Russia."),
            ("the Wall Street Crash", "1929",
             "The Wall Street stock market crashed in October 1929, helping to trigger the Great Depression."),
            ("the end of the Second World War", "1945",
             "The Second World War ended in 1945, with Germany surrendering in May and Japan in September."),
            ("the first crewed landing on the Moon", "1969",
             "Apollo 11 landed on the Moon in July 1969, and Neil Armstrong became the first person to walk on its surface."),
            ("the fall of the Berlin Wall", "1989",
             "The Berlin Wall was opened in November 1989, a key moment in the end of the Cold War."),
        )),
        _Group("What is {key} best known for?", "Who is best known for {value}?", (
            ("Johannes Gutenberg", "introducing printing with movable metal type to Europe",
             "Around 1450 in Mainz, Johannes Gutenberg began printing with movable metal type on a press, which made books far cheaper to produce."),
            ("James Watt", "greatly improving the steam engine with a separate condenser",
             "In the 1760s and 1770s James Watt added a separate condenser to the steam engine, making it much more efficient."),
            ("Alexander Graham Bell", "receiving the first US patent for the telephone",
             "Alexander Graham Bell was granted a US patent for the telephone in 1876."),
            ("Thomas Edison", "developing a practical long-lasting electric light bulb",
             "Thomas Edison's laboratory developed a practical incandescent light bulb around 1879, along with a system to supply electricity."),
            ("Alexander Fleming", "discovering penicillin",
             "In 1928 Alexander Fleming noticed that a Penicillium mould killed the bacteria around it, which led to the discovery of penicillin."),
            ("Marie Curie", "pioneering research on radioactivity",
             "Marie Curie studied radioactivity, discovered the elements polonium and radium with Pierre Curie, and won Nobel Prizes in physics and chemistry."),
            ("Tim Berners-Lee", "inventing the World Wide Web",
             "While working at CERN in 1989, Tim Berners-Lee proposed the World Wide Web, a system of linked pages on the internet."),
            ("Isaac Newton", "formulating the laws of motion and universal gravitation",
             "In his Principia of 1687, Isaac Newton set out three laws of motion and the law of universal gravitation."),
            ("Charles Darwin", "explaining evolution by natural selection",
             "Charles Darwin set out the theory of evolution by natural selection in On the Origin of Species in 1859."),
            ("Galileo Galilei", "discovering four large moons of Jupiter with a telescope",
             "In 1610 Galileo Galilei pointed his telescope at Jupiter and discovered its four largest moons."),
            ("Nicolaus Copernicus", "proposing that the Earth and the planets orbit the Sun",
             "Nicolaus Copernicus proposed a Sun-centred model of the solar system in a book published in 1543."),
            ("Louis Pasteur", "showing that microbes cause spoilage and developing pasteurization",
             "Louis Pasteur showed that microorganisms cause fermentation and spoilage and developed pasteurization, heating liquids to kill harmful microbes."),
        )),
        _Group("Which civilization or state built {key}?", "Which of these was built by {value}?", (
            ("the Great Pyramid of Giza", "the ancient Egyptians",
             "The Great Pyramid of Giza was built in ancient Egypt around 2560 BC as a tomb for the pharaoh Khufu."),
            ("Machu Picchu", "the Inca",
             "Machu Picchu is a fifteenth-century Inca site high in the Andes mountains of Peru."),
            ("the Colosseum in Rome", "the ancient Romans",
             "The Colosseum is an amphitheatre completed in AD 80 under the Roman emperors Vespasian and Titus."),
            ("the Parthenon in Athens", "the ancient Greeks",
             "The Parthenon is a temple to the goddess Athena built by the ancient Greeks on the Acropolis of Athens in the fifth century BC."),
            ("Chichen Itza", "the Maya",
             "Chichen Itza, on the Yucatan Peninsula in Mexico, was one of the largest cities of the Maya."),
            ("Angkor Wat", "the Khmer Empire",
             "Angkor Wat in Cambodia was built in the twelfth century by the Khmer Empire."),
            ("the Taj Mahal", "the Mughal Empire",
             "The Taj Mahal in Agra, India, was built by the Mughal emperor Shah Jahan as a tomb for his wife Mumtaz Mahal."),
            ("the Hagia Sophia in Constantinople", "the Byzantine Empire",
             "The Hagia Sophia was completed in 537 under the Byzantine emperor Justinian I."),
            ("the Forbidden City in Beijing", "the Ming dynasty of China",
             "The Forbidden City was built in the early fifteenth century as the imperial palace of the Ming dynasty."),
        )),
    ),
    "law": (
        _Group('In law, what does the term "{key}" mean?', "Which legal term means {value}?", (
            ("plaintiff", "the party who brings a civil lawsuit",
             "The plaintiff, called the claimant in some countries, is the person or organisation that starts a civil case against another party."),
            ("defendant", "the party who is sued or accused in court",
             "The defendant is the party against whom a civil claim is brought or who is charged with a crime."),
            ("tort", "a civil wrong, other than a breach of contract, for which a court can award damages",
             "A tort, such as negligence or trespass, is a wrongful act that harms someone and lets the injured person sue for compensation."),
            ("statute", "a written law passed by a legislature",
             "A statute is a law enacted by a legislative body such as a parliament or congress, as opposed to law made by judges."),
            ("precedent", "an earlier court decision that guides how later similar cases are decided",
             "Under the doctrine of precedent, courts follow the reasoning of earlier decisions on similar facts, especially those of higher courts."),
            ("affidavit", "a written statement confirmed by oath or affirmation",
             "An affidavit is a written statement of facts that its maker swears or affirms is true, so it can be used as evidence."),
            ("subpoena", "a court order requiring a person to appear or to produce evidence",
             "A subpoena compels a person to attend court to give testimony or to hand over documents, with a penalty for refusing."),
            ("verdict", "the decision of a jury or judge on the facts of a case",
             "The verdict is the finding, such as guilty or not guilty, that the jury or judge reaches at the end of a trial."),
            ("appeal", "a request to a higher court to review a lower court's decision",
             "In an appeal, the losing party asks a higher court to examine whether the lower court made an error."),
            ("injunction", "a court order requiring a party to do or stop doing something",
             "An injunction is a court order that commands a party to take, or to refrain from, a specific action."),
            ("perjury", "knowingly making a false statement under oath",
             "Perjury is the crime of deliberately lying while under oath, for example when giving evidence in court."),
            ("libel", "defamation in written or other permanent form",
             "Libel is defamation, a false statement that harms a person's reputation, published in a lasting form such as print."),
            ("slander", "defamation in spoken form",
             "Slander is defamation that is spoken rather than written or recorded in a permanent form."),
        )),
        _Group('In contract law, what does "{key}" mean?', "In contract law, which term means {value}?", (
            ("offer", "a definite proposal to enter into an agreement on stated terms",
             "An offer is a clear proposal by one party showing willingness to be bound on specific terms once it is accepted."),
            ("acceptance", "unconditional agreement to all the terms of an offer",
             "Acceptance must match the offer exactly; agreeing to every term as it stands forms the contract."),
            ("consideration", "something of value that each party gives or promises in exchange",
             "Consideration is the price of a promise: money, goods, services or a promise given by each side in exchange for the other's."),
            ("capacity", "the legal ability of a party to enter into a binding contract",
             "Capacity concerns whether a party, for example a minor or a person lacking mental capacity, is legally able to make a binding contract."),
            ("counteroffer", "a reply that changes the terms of an offer and so rejects it",
             "A counteroffer proposes different terms; it rejects the original offer and becomes a new offer that the other side may accept."),
            ("breach of contract", "failure to perform a contractual promise without a lawful excuse",
             "A breach of contract occurs when a party does not do what it promised, or does it late or badly, without a legal excuse."),
            ("specific performance", "a court order requiring a party to carry out its contractual promise",
             "Specific performance is a remedy in which the court orders the party in breach to do what it promised, typically when money would not be an adequate remedy."),
            ("void contract", "an agreement that has no legal effect from the start",
             "A void contract is treated as never having existed in law, for example an agreement to commit a crime."),
        )),
        _Group('What does the Latin legal phrase "{key}" refer to?', "Which Latin legal phrase refers to {value}?", (
            ("mens rea", "the guilty mind or intention required for a crime",
             "Mens rea means 'guilty mind': the mental element, such as intention or recklessness, that must accompany the criminal act."),
            ("actus reus", "the physical act or conduct element of a crime",
             "Actus reus means 'guilty act': the conduct, or failure to act, that forms the outward part of a crime."),
            ("stare decisis", "the principle that courts follow earlier decisions",
             "Stare decisis, 'to stand by things decided', is the principle that courts follow precedent."),
            ("pro bono", "legal work done without charge for the public good",
             "Pro bono work, from the phrase 'for the public good', is legal help given free of charge."),
            ("habeas corpus", "the right of a detained person to be brought before a court to test whether the detention is lawful",
             "A writ of habeas corpus requires that a detained person be brought before a judge, who decides whether the detention is lawful."),
            ("res judicata", "the rule that a matter finally decided by a court cannot be brought again by the same parties",
             "Res judicata, 'a matter judged', stops the same parties from relitigating a claim that a court has already decided."),
            ("prima facie", "evidence that is enough to prove a fact unless it is rebutted",
             "Prima facie means 'at first sight': a prima facie case has enough evidence to succeed unless the other side disproves it."),
        )),
        _Single("In a criminal trial in common-law countries, what standard of proof must the prosecution meet to obtain a conviction?",
                "Proof beyond a reasonable doubt",
                ("Proof on the balance of probabilities", "Reasonable suspicion", "Proof beyond all possible doubt",
                 "A prima facie case"),
                "Because a conviction can take away a person's liberty, the prosecution must prove guilt beyond a reasonable doubt, the highest standard used in court."),
        _Single("In most civil cases in common-law countries, what standard of proof must the claimant meet?",
                "Proof on the balance of probabilities",
                ("Proof beyond a reasonable doubt", "Proof beyond all possible doubt", "Reasonable suspicion",
                 "Proof accepted by a unanimous jury"),
                "Civil claims are decided on the balance of probabilities, also called the preponderance of the evidence: the claim must be more likely true than not."),
        _Single("In a criminal trial, which side normally carries the burden of proving guilt?",
                "The prosecution", ("The defendant", "The judge", "The jury", "The court clerk"),
                "Because the accused is presumed innocent, the burden of proving guilt rests on the prosecution, not on the defendant."),
        _Single("Which principle holds that a person accused of a crime is treated as innocent until proven guilty?",
                "The presumption of innocence", ("Double jeopardy", "Stare decisis", "Res judicata", "Sovereign immunity"),
                "The presumption of innocence means the accused does not have to prove anything; guilt must be established by the prosecution."),
        _Single("What does the rule against double jeopardy generally prevent?",
                "Prosecuting a person twice for the same offence after an acquittal or conviction",
                ("Holding a criminal trial without a jury", "Appealing a civil judgment",
                 "Arresting a person without a warrant", "Charging two people with the same crime"),
                "The rule against double jeopardy protects a person from being tried again for the same offence once the case has ended in acquittal or conviction."),
        _Single("What is the main role of an appellate court?",
                "Reviewing the decisions of lower courts for errors",
                ("Holding the first trial and hearing witnesses", "Passing new statutes", "Investigating crimes",
                 "Registering the ownership of land"),
                "An appellate court hears appeals: it reviews what a lower court decided and can correct errors of law."),
        _Single("Which kind of court usually hears witnesses, examines the evidence and decides a case for the first time?",
                "A trial court", ("An appellate court", "A supreme court of appeal", "A legislative committee",
                                  "A law commission"),
                "Cases begin in a trial court, where evidence is presented and witnesses are heard; higher courts mainly review its decisions."),
        _Single("Under the separation of powers, which three branches of government are kept apart?",
                "Legislative, executive and judicial",
                ("Federal, state and local", "Civil, criminal and administrative", "Police, courts and prisons",
                 "Upper house, lower house and cabinet"),
                "The separation of powers divides government into a legislature that makes laws, an executive that carries them out and a judiciary that interprets them."),
        _Single("In a jury trial, what is the main task of the jury?",
                "Deciding questions of fact and reaching a verdict",
                ("Explaining the law to the parties", "Representing the accused", "Drafting the charges",
                 "Hearing appeals from lower courts"),
                "The judge decides questions of law, while the jury weighs the evidence, decides what happened and returns a verdict."),
    ),
    "philosophy": (
        _Group("Which idea is most closely associated with {key}?",
               "Which philosopher is most closely associated with {value}?", (
            ("René Descartes", 'the statement "I think, therefore I am"',
             "Searching for a belief that could not be doubted, René Descartes concluded that the very act of thinking shows that he exists: I think, therefore I am."),
            ("Plato", "the theory of Forms",
             "Plato argued that the changing things we perceive are imperfect copies of perfect, unchanging Forms, as his allegory of the cave illustrates."),
            ("Aristotle", "the view that virtue is a mean between excess and deficiency",
             "In the Nicomachean Ethics, Aristotle describes each virtue as a middle state, as courage lies between cowardice and recklessness."),
            ("Immanuel Kant", "the categorical imperative",
             "Immanuel Kant held that morality rests on the categorical imperative: act only on principles that you could will to become universal laws."),
            ("John Stuart Mill", "the harm principle",
             "In On Liberty, John Stuart Mill argued that the only legitimate reason to limit a person's freedom is to prevent harm to others."),
            ("Jeremy Bentham", "the felicific calculus for measuring pleasure and pain",
             "Jeremy Bentham, a founder of utilitarianism, proposed the felicific calculus to weigh the pleasures and pains that an action produces."),
            ("Thomas Hobbes", 'the claim that life without government would be "solitary, poor, nasty, brutish, and short"',
             "In Leviathan, Thomas Hobbes argued that without a strong government people would live in a war of all against all, where life would be solitary, poor, nasty, brutish, and short."),
            ("John Locke", "the idea that the mind at birth is a blank slate",
             "John Locke argued that the mind begins as a tabula rasa, a blank slate, and that knowledge comes from experience."),
            ("Friedrich Nietzsche", 'the declaration that "God is dead"',
             "Friedrich Nietzsche wrote that God is dead to describe the decline of religious belief as a foundation for values in modern Europe."),
            ("Socrates", "the claim that the unexamined life is not worth living",
             "According to Plato's Apology, Socrates told the jury at his trial that the unexamined life is not worth living."),
            ("Jean-Paul Sartre", 'the slogan "existence precedes essence"',
             "Jean-Paul Sartre, a leading existentialist, held that humans first exist and then define themselves through their choices: existence precedes essence."),
            ("Karl Marx", "the view that history is driven by class struggle",
             "Karl Marx argued that history is shaped by conflict between economic classes, such as workers and the owners of capital."),
            ("David Hume", "the problem of induction",
             "David Hume asked what justifies expecting the future to resemble the past; this question is known as the problem of induction."),
            ("Thomas Aquinas", "the Five Ways of arguing for the existence of God",
             "In the Summa Theologiae, Thomas Aquinas gave five arguments for the existence of God, known as the Five Ways."),
            ("Confucius", "an ethics built on humaneness, ritual propriety and respect for parents",
             "Confucius taught that a good life and a well-ordered society rest on ren (humaneness), li (ritual propriety) and filial piety."),
        )),
        _Group("In philosophy, what does {key} study?", "Which branch of philosophy studies {value}?", (
            ("epistemology", "the nature and limits of knowledge",
             "Epistemology, from the Greek word for knowledge, asks what knowledge is and how beliefs can be justified."),
            ("metaphysics", "the basic nature of reality and existence",
             "Metaphysics studies the most general features of reality, such as existence, objects, time and causation."),
            ("ethics", "how people ought to act and what makes actions right or wrong",
             "Ethics, or moral philosophy, studies right and wrong conduct and what makes a life good."),
            ("logic", "the principles of valid reasoning",
             "Logic studies which arguments are valid, meaning that the conclusion follows from the premises."),
            ("aesthetics", "beauty, art and taste",
             "Aesthetics studies the nature of beauty and art and how we judge them."),
            ("political philosophy", "justice, government and the legitimacy of authority",
             "Political philosophy asks what makes a government legitimate and how a just society should be organised."),
            ("philosophy of mind", "the nature of the mind and its relation to the body",
             "Philosophy of mind studies consciousness and mental states and how they relate to the body and brain."),
        )),
        _Group('In philosophy, what does the term "{key}" mean?', "Which philosophical term means {value}?", (
            ("syllogism", "an argument in which a conclusion is drawn from two premises",
             "A syllogism has two premises and a conclusion, as in: all humans are mortal; Socrates is a human; so Socrates is mortal."),
            ("ad hominem", "attacking the person who makes an argument instead of the argument itself",
             "An ad hominem fallacy tries to reject a claim by criticising the person making it rather than addressing the reasons given."),
            ("straw man", "misrepresenting an opponent's position to make it easier to attack",
             "A straw man fallacy replaces an opponent's real argument with a weaker version and then attacks that version."),
            ("empiricism", "the view that knowledge comes mainly from sense experience",
             "Empiricists such as Locke and Hume held that our ideas and knowledge come chiefly from experience through the senses."),
            ("rationalism", "the view that reason is a main source of knowledge, independent of experience",
             "Rationalists such as Descartes and Leibniz held that some knowledge can be gained by reason alone."),
            ("determinism", "the view that every event is fixed by earlier causes",
             "Determinism holds that everything that happens is the necessary result of earlier causes together with the laws of nature."),
            ("utilitarianism", "the view that the right action is the one that produces the greatest overall happiness",
             "Utilitarianism, developed by Bentham and Mill, judges actions by their consequences for the total happiness of everyone affected."),
            ("a priori", "knowledge that can be justified without relying on experience",
             "A priori knowledge, such as that all bachelors are unmarried, can be known by reason alone, unlike a posteriori knowledge from experience."),
            ("tautology", "a statement that is true by its logical form alone",
             "A tautology, such as 'it is raining or it is not raining', is true whatever the facts are, because of its form."),
        )),
    ),
    "psychology": (
        _Group("What is {key} best known for in psychology?", "Which psychologist is best known for {value}?", (
            ("Ivan Pavlov", "demonstrating classical conditioning with dogs",
             "Ivan Pavlov showed that dogs learned to salivate at a signal, such as a sound, that had been paired with food; this is classical conditioning."),
            ("B. F. Skinner", "studying operant conditioning through reinforcement and punishment",
             "B. F. Skinner showed that behaviour followed by reinforcement becomes more frequent, using devices such as the Skinner box."),
            ("Jean Piaget", "a stage theory of children's cognitive development",
             "Jean Piaget described four stages of cognitive development, from the sensorimotor stage in infancy to the formal operational stage."),
            ("Sigmund Freud", "founding psychoanalysis",
             "Sigmund Freud founded psychoanalysis and described the mind in terms of the id, the ego and the superego."),
            ("Abraham Maslow", "the hierarchy of needs",
             "Abraham Maslow proposed that human needs form a hierarchy, from physiological needs up to self-actualisation."),
            ("Stanley Milgram", "experiments on obedience to authority",
             "In Stanley Milgram's experiments, many participants obeyed instructions to give what they believed were painful electric shocks."),
            ("Erik Erikson", "eight stages of psychosocial development across the lifespan",
             "Erik Erikson described eight stages from infancy to old age, each centred on a conflict such as trust versus mistrust."),
            ("Albert Bandura", "the Bobo doll study of learning by imitation",
             "In Albert Bandura's Bobo doll study, children who watched an adult hit a doll were more likely to copy that aggression, showing observational learning."),
            ("Hermann Ebbinghaus", "describing the forgetting curve",
             "Hermann Ebbinghaus tested his own memory for nonsense syllables and found that forgetting is fast at first and then slows down: the forgetting curve."),
            ("Wilhelm Wundt", "opening the first laboratory for experimental psychology",
             "Wilhelm Wundt opened the first laboratory devoted to experimental psychology in Leipzig in 1879."),
            ("John Bowlby", "attachment theory",
             "John Bowlby's attachment theory holds that infants form a strong emotional bond with a caregiver, which shapes later relationships."),
            ("Carl Rogers", "client-centred therapy",
             "Carl Rogers developed client-centred therapy, in which the therapist offers empathy, genuineness and unconditional positive regard."),
            ("Solomon Asch", "experiments on conformity to a group's judgements",
             "In Solomon Asch's line-judgement experiments, many people gave obviously wrong answers to agree with the group."),
        )),
        _Group('In psychology, what does the term "{key}" mean?', "Which psychological term means {value}?", (
            ("placebo effect", "an improvement caused by a person's expectations rather than by the treatment itself",
             "In the placebo effect, people improve after an inactive treatment, such as a sugar pill, because they expect it to help."),
            ("confirmation bias", "the tendency to favour information that supports what one already believes",
             "Confirmation bias leads people to seek out, notice and remember evidence that fits their existing beliefs."),
            ("cognitive dissonance", "the discomfort of holding conflicting beliefs or acting against one's beliefs",
             "Leon Festinger described cognitive dissonance as an uncomfortable tension that people try to reduce by changing a belief or a behaviour."),
            ("bystander effect", "the tendency to be less likely to help a victim when other people are present",
             "In the bystander effect, each person feels less responsible when others are around, so help becomes less likely."),
            ("neuroplasticity", "the brain's ability to change its connections with experience",
             "Neuroplasticity is the brain's capacity to form and reorganise connections between neurons in response to learning or injury."),
            ("extinction", "the fading of a learned response when it is no longer reinforced",
             "In conditioning, extinction happens when a response is no longer followed by reinforcement and gradually weakens."),
            ("fundamental attribution error", "overestimating personality and underestimating the situation when explaining other people's behaviour",
             "The fundamental attribution error is the tendency to blame another person's character for their actions while overlooking the circumstances."),
            ("Hawthorne effect", "a change in behaviour caused by knowing that one is being observed",
             "The Hawthorne effect, named after studies at a factory, is the change in people's behaviour when they know they are being studied."),
            ("independent variable", "the factor that the researcher deliberately changes in an experiment",
             "In an experiment the researcher manipulates the independent variable to see what effect it has."),
            ("dependent variable", "the factor that is measured to see the effect of a change",
             "The dependent variable is the outcome the researcher measures, which may depend on the independent variable."),
            ("REM sleep", "the stage of sleep with rapid eye movements and vivid dreaming",
             "REM sleep, named after its rapid eye movements, is the stage in which most vivid dreams occur."),
        )),
        _Group("In the human brain, what is {key} mainly involved in?",
               "Which part of the brain is mainly involved in {value}?", (
            ("the hippocampus", "forming new long-term memories",
             "The hippocampus is needed to form new long-term memories of facts and events; damage to it can leave a person unable to remember new information."),
            ("the amygdala", "processing emotions such as fear",
             "The amygdala, a small almond-shaped structure, plays a central role in detecting threats and producing fear responses."),
            ("the cerebellum", "coordinating balance and smooth movement",
             "The cerebellum at the back of the brain fine-tunes movement, balance and posture."),
            ("the occipital lobe", "processing what we see",
             "The occipital lobe at the back of the cerebral cortex contains the primary visual cortex."),
            ("Broca's area", "producing speech",
             "Broca's area in the left frontal lobe is involved in producing speech; damage to it causes halting, effortful speech."),
            ("Wernicke's area", "understanding language",
             "Wernicke's area in the left temporal lobe is involved in understanding language; damage to it causes fluent but meaningless speech."),
            ("the medulla oblongata", "controlling breathing and heart rate",
             "The medulla oblongata in the brainstem controls automatic functions such as breathing, heart rate and blood pressure."),
            ("the prefrontal cortex", "planning, decision-making and self-control",
             "The prefrontal cortex at the front of the brain supports planning, decision-making and control of impulses."),
        )),
    ),
}


def _knowledge_pool(name: str) -> list[tuple[int, str, str, list[str], str]]:
    """Every question a domain's bank yields: (fact number, question, answer, candidate distractors,
    explanation). Forward and reverse questions on one fact share its number."""
    pool = []
    for entry in _BANKS[name]:
        if isinstance(entry, _Single):
            pool.append((len(pool), entry.question, entry.answer, list(entry.distractors), entry.explanation))
            continue
        for key, value, expl in entry.facts:
            fact = len(pool)
            wrong_values = sorted({v for _, v, _ in entry.facts if v != value})
            pool.append((fact, entry.forward.format(key=key), _cap(value), [_cap(v) for v in wrong_values], expl))
            if entry.reverse is not None:
                wrong_keys = [k for k, v, _ in entry.facts if v != value]
                pool.append((fact, entry.reverse.format(value=value), _cap(key), [_cap(k) for k in wrong_keys], expl))
    return pool


def _pick_knowledge(pool, n_test: int, n_demos: int, rng: random.Random):
    """Demos first, then test items. A fact shown in a demo never appears in the test split (the
    demo would give the answer away); within the test split distinct facts are used first, and
    the other direction of a fact only when the bank runs short."""
    rng.shuffle(pool)
    demos, demo_facts = [], set()
    for item in pool:
        if len(demos) < n_demos and item[0] not in demo_facts:
            demos.append(item)
            demo_facts.add(item[0])
    rest = [item for item in pool if item[0] not in demo_facts]
    test, used = [], set()
    for item in rest:
        if len(test) < n_test and item[0] not in used:
            test.append(item)
            used.add(item[0])
    test += [item for item in rest if item not in test][:n_test - len(test)]
    if len(demos) < n_demos or len(test) < n_test:
        raise ValueError(f"the bank has too few facts for {n_test} test and {n_demos} demo items")
    rng.shuffle(test)
    return demos + test


# ----------------------------------------------------------------------------------------------
# Domain items (MMLU-Pro schema)

def _record(qid: int, name: str, question: str, answer: str, distractors: list[str], explanation: str,
            rng: random.Random, used: list[int]) -> dict:
    # The least-used position so far (random among ties): letters stay balanced, so a model that
    # favours one letter gains nothing, and the order within each round is still unpredictable.
    k = len(distractors) + 1
    pos = min(range(k), key=lambda i: (used[i], rng.random()))
    used[pos] += 1
    options = distractors[:pos] + [answer] + distractors[pos:]
    letter = LETTERS[pos]
    return {"question_id": qid, "question": question, "options": options, "answer": letter,
            "answer_index": pos, "cot_content": f"A: Let's think step by step. {explanation} The answer is ({letter}).",
            "category": name, "src": f"stsflow-synthetic-{name}"}


def domain_items(name: str, n_test: int = 40, n_demos: int = 5, seed: int = 0) -> tuple[list[dict], list[dict]]:
    """(test items, demonstration items) for one of ``DOMAINS``; the two splits never share a question.

    ``question_id`` is ``1000 * (domain position + 1) + item index``, so ids are unique across domains.
    """
    if name not in DOMAINS:
        raise ValueError(f"unknown domain {name!r}; known: {', '.join(DOMAINS)}")
    need = n_test + n_demos
    if need >= 1000:
        raise ValueError("at most 999 items per domain keep question ids unique")
    rng = random.Random(f"stsflow-domain:{name}:{seed}")  # str seeds hash stably across runs

    def item_rng(question: str) -> random.Random:
        # Options and answer position of an item come from its own stream, so an item looks the
        # same whatever else is drawn (e.g. demos do not change with n_test).
        return random.Random(f"stsflow-item:{name}:{seed}:{question}")

    items: list[tuple[str, str, list[str], str, random.Random]] = []
    if name in _NUMERIC_TEMPLATES:
        templates, seen = _NUMERIC_TEMPLATES[name], set()
        attempts = 0
        while len(items) < need:
            attempts += 1
            if attempts > 100 * need:
                raise RuntimeError(f"could not draw {need} distinct {name} questions")
            q, body, value, fmt, mistakes = templates[len(items) % len(templates)](rng)
            if q in seen:
                continue
            seen.add(q)
            irng = item_rng(q)
            k = irng.choice((4, 5, 6))
            items.append((q, fmt(value), _numeric_distractors(irng, value, fmt, mistakes, k - 1), body, irng))
    else:
        for _, q, answer, wrong, expl in _pick_knowledge(_knowledge_pool(name), n_test, n_demos, rng):
            irng = item_rng(q)
            k = min(irng.choice((4, 5, 6)), len(wrong) + 1)
            items.append((q, answer, irng.sample(wrong, k - 1), expl, irng))
    base = 1000 * (DOMAINS.index(name) + 1)
    used = [0] * len(LETTERS)
    records = [_record(base + i, name, q, a, wrong, expl, irng, used)
               for i, (q, a, wrong, expl, irng) in enumerate(items)]
    # Demos come first, so changing n_test leaves the few-shot demonstrations unchanged.
    return records[n_demos:], records[:n_demos]


# ----------------------------------------------------------------------------------------------
# Files

def _write_jsonl(records: list[dict], path: Path) -> None:
    text = "".join(json.dumps(r, sort_keys=True, ensure_ascii=False) + "\n" for r in records)
    path.write_bytes(text.encode("utf-8"))


def write_default_data(outdir: str | Path, seed: int = 0) -> dict[str, Path]:
    """Write the default data set as JSON lines; returns {"sft_math" | "<domain>.test" | "<domain>.demos": path}."""
    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    paths = {"sft_math": outdir / "sft_math.jsonl"}
    _write_jsonl(sft_math(400, seed), paths["sft_math"])
    for name in DOMAINS:
        test, demos = domain_items(name, seed=seed)
        for split, recs in (("test", test), ("demos", demos)):
            paths[f"{name}.{split}"] = outdir / f"{name}.{split}.jsonl"
            _write_jsonl(recs, paths[f"{name}.{split}"])
    return paths
