"""The report as a document: a list of blocks, rendered twice (Markdown, HTML), so both always
say the same.

A block is a tuple: ``("h", level, text)``, ``("p", text)``, ``("ul", items)``,
``("table", headers, rows)`` (cells already text: ``table_block``), ``("img", file name,
caption)`` or ``("cards", cards table)``. The HTML is self-contained (the PNGs embedded as
base64, the CSS and the cards' script inline) so it can be mailed or archived alone; the
Markdown references the PNG files next to it."""

from __future__ import annotations

import base64
import html
import re

import polars as pl

from stsflow.report.card_views import CARDS_CSS, CARDS_JS, cards_html, cards_markdown_rows
from stsflow.report.formatting import fmt


def table_block(headers: list[str], rows: list[list]) -> tuple:
    """A table block, every cell formatted (``formatting.fmt``)."""
    return ("table", headers, [[fmt(v) for v in r] for r in rows])


def df_block(df: pl.DataFrame) -> tuple:
    """A table block of a whole data frame, its columns the headers."""
    return table_block(df.columns, [list(r) for r in df.iter_rows()])


def _md_cell(s: str) -> str:
    return s.replace("|", "\\|").replace("\n", " ")


def to_markdown(blocks: list[tuple]) -> str:
    """The blocks as Markdown; images by file name, the cards as a plain table."""
    out = []
    for b in blocks:
        kind = b[0]
        if kind == "h":
            out.append("#" * b[1] + " " + b[2])
        elif kind == "p":
            out.append(b[1])
        elif kind == "ul":
            out.append("\n".join(f"- {item}" for item in b[1]) if b[1] else "_none_")
        elif kind == "table":
            headers, rows = b[1], b[2]
            if not rows:
                out.append("_no rows_")
                continue
            lines = ["| " + " | ".join(_md_cell(h) for h in headers) + " |",
                     "|" + "---|" * len(headers)]
            lines += ["| " + " | ".join(_md_cell(c) for c in r) + " |" for r in rows]
            out.append("\n".join(lines))
        elif kind == "img":
            out.append(f"![{b[2]}]({b[1]})")
        elif kind == "cards":
            headers, rows = cards_markdown_rows(b[1])
            out.append(to_markdown([table_block(headers, rows)]).strip())
    return "\n\n".join(out) + "\n"


_CSS = ("body{font-family:sans-serif;max-width:80em;margin:2em auto;padding:0 1em}"
        "table{border-collapse:collapse;margin:1em 0;font-size:90%}"
        "th,td{border:1px solid #bbb;padding:.2em .5em;text-align:left;vertical-align:top}"
        "th{background:#eee}img{max-width:100%}nav ul{columns:2}" + CARDS_CSS)


def _anchor(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def to_html(title: str, blocks: list[tuple], images: dict[str, bytes]) -> str:
    """The blocks as one self-contained HTML page: contents linking every section, ``images``
    (file name -> PNG bytes) embedded, the cards searchable and sortable."""
    e = html.escape
    out = ["<!DOCTYPE html>", "<html lang=\"en\"><head><meta charset=\"utf-8\">",
           f"<title>{e(title)}</title><style>{_CSS}</style></head><body>"]
    sections = [b[2] for b in blocks if b[0] == "h" and b[1] == 2]
    for b in blocks:
        kind = b[0]
        if kind == "h" and b[1] == 1:  # the title, then the contents (links to each section)
            out.append(f"<h1>{e(b[2])}</h1>")
            out.append("<nav><ul>" + "".join(f'<li><a href="#{_anchor(h)}">{e(h)}</a></li>'
                                             for h in sections) + "</ul></nav>")
        elif kind == "h" and b[1] == 2:
            out.append(f'<h2 id="{_anchor(b[2])}">{e(b[2])}</h2>')
        elif kind == "h":
            out.append(f"<h{b[1]}>{e(b[2])}</h{b[1]}>")
        elif kind == "p":
            out.append(f"<p>{e(b[1])}</p>")
        elif kind == "ul":
            out.append("<ul>" + "".join(f"<li>{e(i)}</li>" for i in b[1]) + "</ul>"
                       if b[1] else "<p><em>none</em></p>")
        elif kind == "table":
            headers, rows = b[1], b[2]
            if not rows:
                out.append("<p><em>no rows</em></p>")
                continue
            out.append("<table><thead><tr>" + "".join(f"<th>{e(h)}</th>" for h in headers)
                       + "</tr></thead><tbody>"
                       + "".join("<tr>" + "".join(f"<td>{e(c)}</td>" for c in r) + "</tr>"
                                 for r in rows)
                       + "</tbody></table>")
        elif kind == "img":
            data = base64.b64encode(images[b[1]]).decode("ascii")
            out.append(f"<figure><img alt=\"{e(b[2])}\" src=\"data:image/png;base64,{data}\">"
                       f"<figcaption>{e(b[2])}</figcaption></figure>")
        elif kind == "cards":
            out.append(cards_html(b[1]))
    if any(b[0] == "cards" for b in blocks):
        out.append(f"<script>{CARDS_JS}</script>")
    out.append("</body></html>")
    return "\n".join(out) + "\n"
