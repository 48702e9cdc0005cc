"""Chemistry items: molar masses from rounded atomic masses, moles, concentration, dilution and
reaction stoichiometry."""

from __future__ import annotations

from fractions import Fraction as F

from stsflow.data.builtin.common import _num
from stsflow.data.builtin.numeric.formats import _unit


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


# in the order domain_items cycles through them (changing it changes the drawn items)
TEMPLATES = (_c_molar_mass, _c_moles, _c_molarity, _c_solute, _c_dilution, _c_stoich)
