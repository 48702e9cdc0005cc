"""Shared by the built-in generators: the domain lists, number formatting and the people who appear
in word problems."""

from __future__ import annotations

import random
from decimal import Decimal
from fractions import Fraction
from math import gcd
from typing import NamedTuple

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


def _coprime_fraction(rng):
    while True:
        d = rng.randint(3, 8)
        n = rng.randint(1, d - 1)
        if gcd(n, d) == 1:
            return n, d
