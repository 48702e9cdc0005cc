"""How a numeric domain's options print: exact decimals, as money, percentages or with a unit."""

from __future__ import annotations

from typing import Callable

from stsflow.data.builtin.common import _num


def _money(v) -> str:
    return f"${_num(v)}"


def _pct(v) -> str:
    return f"{_num(v)}%"


def _unit(u: str) -> Callable:
    return lambda v: f"{_num(v)} {u}"


def _plain(v) -> str:
    return _num(v)
