"""Feature cards shown: an HTML table that is searchable and sortable with JavaScript and readable
without it, a Markdown table, and a terminal view (rich) for ``stsflow cards``."""

from __future__ import annotations

import html
import math

import polars as pl

SET_ORDER = {"predicted": 0}


def _clean(text: str) -> str:
    """A context's text on one line: line breaks shown as ↵, tabs as a space."""
    return text.replace("\r", "").replace("\n", "↵").replace("\t", " ")


def ordered(cards: pl.DataFrame) -> pl.DataFrame:
    """Cards in reading order: per (layer, SAE, seed), the predicted set first, then by rank."""
    keys = [c for c in ("model", "sft", "layer", "sae", "seed") if c in cards.columns]
    return cards.with_columns(
        _s=pl.col("set").replace_strict(SET_ORDER, default=1, return_dtype=pl.Int64)
    ).sort([*keys, "_s", "set", "rank"]).drop("_s")


def sign(mean_diff: float) -> str:
    return "+" if mean_diff > 0 else "−" if mean_diff < 0 else "0"


def top_domain(corpora: list[dict]) -> dict | None:
    """The domain where the feature fires most often (ties: the larger mean)."""
    doms = [c for c in corpora if c["kind"] == "domain" and not _nan(c["frequency"])]
    return max(doms, key=lambda c: (c["frequency"], c["mean"]), default=None)


def _nan(v) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v))


def sft_stats(corpora: list[dict]) -> dict | None:
    return next((c for c in corpora if c["kind"] == "sft"), None)


def lens_text(tokens: list[dict] | None, k: int = 5) -> str:
    """The first ``k`` lens tokens, each quoted (a token's leading space is part of it)."""
    if not tokens:
        return "n/a"
    return ", ".join(f"“{_clean(t['token'])}”" for t in tokens[:k])


def sorted_contexts(contexts: list[dict]) -> list[dict]:
    """The SFT set's contexts first, then every domain's, largest activation first in each."""
    return sorted(contexts, key=lambda c: (c["kind"] != "sft", c["corpus"], -c["activation"],
                                           c["doc_id"], c["pos"]))


# ------------------------------------------------------------------------------------- HTML

CARDS_JS = """
(function () {
  var t = document.getElementById('cards-table');
  var box = document.getElementById('cards-filter');
  if (!t || !box) { return; }
  var body = t.tBodies[0];
  box.hidden = false;
  box.addEventListener('input', function () {
    var q = box.value.toLowerCase();
    Array.prototype.forEach.call(body.rows, function (r) {
      r.hidden = q !== '' && r.textContent.toLowerCase().indexOf(q) < 0;
    });
  });
  Array.prototype.forEach.call(t.tHead.rows[0].cells, function (th, i) {
    th.className = 'sortable';
    th.title = 'sort by this column';
    th.addEventListener('click', function () {
      var asc = th.getAttribute('data-dir') !== 'asc';
      th.setAttribute('data-dir', asc ? 'asc' : 'desc');
      var rows = Array.prototype.slice.call(body.rows);
      rows.sort(function (a, b) {
        var x = a.cells[i].getAttribute('data-v'), y = b.cells[i].getAttribute('data-v');
        if (x === null) { x = a.cells[i].textContent; }
        if (y === null) { y = b.cells[i].textContent; }
        var nx = parseFloat(x), ny = parseFloat(y);
        var c = (!isNaN(nx) && !isNaN(ny)) ? nx - ny : x.localeCompare(y);
        return asc ? c : -c;
      });
      rows.forEach(function (r) { body.appendChild(r); });
    });
  });
})();
"""

CARDS_CSS = ("mark{background:#ffe08a}.ctx{font-family:monospace;font-size:85%;"
             "white-space:pre-wrap}th.sortable{cursor:pointer}#cards-filter{width:30em;"
             "margin:.5em 0}")


def _td(text: str, value=None) -> str:
    v = "" if value is None else f' data-v="{html.escape(str(value))}"'
    return f"<td{v}>{text}</td>"


def cards_html(cards: pl.DataFrame) -> str:
    """One table row per card; contexts in a <details> element (no JavaScript needed)."""
    e = html.escape
    head = ["set", "layer / SAE / seed", "rank", "dim", "shift (sign)", "also in",
            "SFT freq.", "SFT mean", "most frequent domain", "promotes", "suppresses",
            "contexts"]
    out = ['<input id="cards-filter" type="search" hidden '
           'placeholder="filter cards: a dimension, a token, a domain…">',
           '<table id="cards-table"><thead><tr>'
           + "".join(f"<th>{e(h)}</th>" for h in head) + "</tr></thead><tbody>"]
    for r in ordered(cards).iter_rows(named=True):
        sft = sft_stats(r["corpora"]) or {}
        dom = top_domain(r["corpora"])
        dim = e(str(r["dim"]))
        if r.get("neuronpedia"):
            dim = f'<a href="{e(r["neuronpedia"])}">{dim}</a>'
        ctx = sorted_contexts(r["contexts"])
        items = "".join(
            f'<li><b>{e(c["corpus"])}</b> {c["activation"]:.3g}: <span class="ctx">'
            f'{e(_clean(c["before"]))}<mark>{e(_clean(c["token"]))}</mark>'
            f'{e(_clean(c["after"]))}</span></li>' for c in ctx)
        per_corpus = "".join(
            f"<tr><td>{e(c['corpus'])}</td><td>{c['tokens']}</td><td>{_pct(c['frequency'])}"
            f"</td><td>{_num(c['mean'])}</td><td>{_num(c['max'])}</td></tr>"
            for c in r["corpora"])
        details = (f"<details><summary>{len(ctx)} contexts, {len(r['corpora'])} corpora"
                   "</summary><table><tr><th>corpus</th><th>tokens</th><th>freq.</th>"
                   f"<th>mean</th><th>max</th></tr>{per_corpus}</table>"
                   f"<ul>{items}</ul></details>")
        cells = [
            _td(e(r["set"])),
            _td(e(f"L{r['layer']} / {r['sae']} / s{r['seed']}")),
            _td(str(r["rank"]), r["rank"]),
            _td(dim, r["dim"]),
            _td(f"{r['shift']:.3g} ({sign(r['mean_diff'])})", r["shift"]),
            _td(e(", ".join(r["also_in"])) or "—"),
            _td(_pct(sft.get("frequency")), sft.get("frequency")),
            _td(_num(sft.get("mean")), sft.get("mean")),
            _td(e(f"{dom['corpus']} {_pct(dom['frequency'])}") if dom else "n/a",
                dom["frequency"] if dom else None),
            _td(f'<span class="ctx">{e(lens_text(r["promotes"]))}</span>'),
            _td(f'<span class="ctx">{e(lens_text(r["suppresses"]))}</span>'),
            _td(details, len(ctx)),
        ]
        out.append('<tr class="card">' + "".join(cells) + "</tr>")
    out.append("</tbody></table>")
    return "\n".join(out)


def _pct(v) -> str:
    return "n/a" if _nan(v) else f"{100 * v:.1f}%"


def _num(v) -> str:
    return "n/a" if _nan(v) else f"{v:.3g}"


def cards_markdown_rows(cards: pl.DataFrame) -> tuple[list[str], list[list[str]]]:
    """(headers, rows) of the Markdown table: one line per card, its strongest SFT context."""
    headers = ["set", "layer/SAE/seed", "rank", "dim", "shift (sign)", "also in", "SFT freq.",
               "promotes", "top SFT context"]
    rows = []
    for r in ordered(cards).iter_rows(named=True):
        sft = sft_stats(r["corpora"]) or {}
        ctx = [c for c in sorted_contexts(r["contexts"]) if c["kind"] == "sft"]
        top = (f"{_clean(ctx[0]['before'])}**{_clean(ctx[0]['token'])}**"
               f"{_clean(ctx[0]['after'])}" if ctx else "none")
        rows.append([r["set"], f"L{r['layer']}/{r['sae']}/s{r['seed']}", str(r["rank"]),
                     str(r["dim"]) + (f" ([Neuronpedia]({r['neuronpedia']}))"
                                      if r.get("neuronpedia") else ""),
                     f"{r['shift']:.3g} ({sign(r['mean_diff'])})",
                     ", ".join(r["also_in"]) or "—", _pct(sft.get("frequency")),
                     lens_text(r["promotes"]), top])
    return headers, rows


# --------------------------------------------------------------------------------- terminal

def print_cards(cards: pl.DataFrame, console=None) -> None:
    """Every card of ``cards`` in the terminal: a panel each, its corpora and contexts as
    tables (rich)."""
    from rich.console import Console, Group
    from rich.panel import Panel
    from rich.table import Table
    from rich.text import Text

    console = console or Console()
    for r in ordered(cards).iter_rows(named=True):
        head = Text.assemble(
            (f"{r['model']} / {r['sft']}  L{r['layer']} {r['sae']} seed {r['seed']}  ", "dim"),
            (f"dimension {r['dim']}", "bold"),
            f"  {r['set']} rank {r['rank']}, shift {r['shift']:.4g} "
            f"(mean change {r['mean_diff']:+.4g})")
        lines = [head,
                 Text(f"also in: {', '.join(r['also_in']) or 'no other set'}"),
                 Text(f"promotes:   {lens_text(r['promotes'], 10)}"),
                 Text(f"suppresses: {lens_text(r['suppresses'], 10)}")]
        if r.get("neuronpedia"):
            lines.append(Text(f"Neuronpedia: {r['neuronpedia']}"))
        stats = Table("corpus", "kind", "tokens", "frequency", "mean", "max", box=None)
        for c in r["corpora"]:
            stats.add_row(c["corpus"], c["kind"], str(c["tokens"]), _pct(c["frequency"]),
                          _num(c["mean"]), _num(c["max"]))
        ctx = Table("corpus", "act.", "context", box=None)
        for c in sorted_contexts(r["contexts"]):
            ctx.add_row(c["corpus"], f"{c['activation']:.3g}",
                        Text.assemble(_clean(c["before"]), (_clean(c["token"]), "reverse"),
                                      _clean(c["after"])))
        console.print(Panel(Group(*lines, stats, ctx), expand=False))
