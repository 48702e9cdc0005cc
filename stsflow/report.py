"""Report of the validation step: correlations table, scatter plots, Markdown and HTML summaries.

The HTML is self-contained (plots embedded as base64 PNG) so it can be mailed or archived alone;
the Markdown references the PNG files next to it. Every file is written atomically.
"""

from __future__ import annotations

import base64
import html
import io
import json
import math
import re
from pathlib import Path

import numpy as np
import polars as pl
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from stsflow import stats as st
from stsflow.storage import atomic_path, write_parquet, write_text

_NA = "n/a"


# ---------------------------------------------------------------- formatting

def _isnum(v) -> bool:
    return isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool)


def _fmt(v, spec: str = ".4g") -> str:
    if v is None:
        return _NA
    if isinstance(v, (float, np.floating)):
        return _NA if not math.isfinite(v) else format(float(v), spec)
    return str(v)


def _fmt_rho(row: dict) -> str:
    rho = _fmt(row["pearson"], ".2f")
    lo, hi = row["pearson_ci_low"], row["pearson_ci_high"]
    if rho == _NA or not (_isnum(lo) and _isnum(hi) and math.isfinite(lo) and math.isfinite(hi)):
        return rho
    return f"{rho} [{lo:.2f}, {hi:.2f}]"


def interpret(row: dict, ci: float = 0.95) -> str:
    """One honest sentence from a correlation row: what the numbers support, nothing more."""
    n = row["n_domains"]
    rho, lo, hi = row["pearson"], row["pearson_ci_low"], row["pearson_ci_high"]
    perm = row.get("perm_p")
    caveat = (" (extreme-groups selection, which inflates ρ)"
              if row.get("protocol") == "extremes" else "")
    if rho is None or not math.isfinite(rho):
        return (f"ρ undefined over {n} domains (fewer than 3 domains or a constant variable)"
                f"{caveat}.")
    perm_txt = f", permutation p = {perm:.2g}" if perm is not None and math.isfinite(perm) else ""
    if lo is None or hi is None or not (math.isfinite(lo) and math.isfinite(hi)):
        return (f"ρ = {rho:.2f} over {n} domains{perm_txt}; no bootstrap CI (too few usable "
                f"resamples), so the sign is not established{caveat}.")
    head = f"ρ = {rho:.2f}, {ci:.0%} CI [{lo:.2f}, {hi:.2f}] over {n} domains"
    if lo <= 0.0 <= hi:
        return (f"{head}: not distinguishable from zero at this sample size{perm_txt}"
                f"{caveat}.")
    if lo > 0.0:
        return (f"{head}: positive correlation, higher STS goes with larger |Δ| as predicted"
                f"{perm_txt}{caveat}.")
    return (f"{head}: negative correlation, higher STS goes with smaller |Δ|, opposite to the "
            f"prediction{perm_txt}{caveat}.")


def _safe_name(s: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", s)


# ---------------------------------------------------------------- document model
# A summary is a list of blocks rendered twice (Markdown, HTML), so both always say the same.

def _table_block(headers: list[str], rows: list[list]) -> tuple:
    return ("table", headers, [[_fmt(v) for v in r] for r in rows])


def _df_block(df: pl.DataFrame) -> tuple:
    return _table_block(df.columns, [list(r) for r in df.iter_rows()])


def _md_cell(s: str) -> str:
    return s.replace("|", "\\|").replace("\n", " ")


def _to_markdown(blocks: list[tuple]) -> str:
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
    return "\n\n".join(out) + "\n"


_CSS = ("body{font-family:sans-serif;max-width:80em;margin:2em auto;padding:0 1em}"
        "table{border-collapse:collapse;margin:1em 0;font-size:90%}"
        "th,td{border:1px solid #bbb;padding:.2em .5em;text-align:left}"
        "th{background:#eee}img{max-width:100%}")


def _to_html(title: str, blocks: list[tuple], images: dict[str, bytes]) -> str:
    e = html.escape
    out = ["<!DOCTYPE html>", "<html><head><meta charset=\"utf-8\">",
           f"<title>{e(title)}</title><style>{_CSS}</style></head><body>"]
    for b in blocks:
        kind = b[0]
        if kind == "h":
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
    out.append("</body></html>")
    return "\n".join(out) + "\n"


# ---------------------------------------------------------------- plots

def _filter_eq(df: pl.DataFrame, values: dict) -> pl.DataFrame:
    for c, v in values.items():
        if c in df.columns:
            df = df.filter(pl.col(c).eq_missing(pl.lit(v, dtype=df.schema[c])))
    return df


def _plot_group(observed: pl.DataFrame, extra: list[str]) -> tuple[str | None, dict]:
    """The (metric, method, seed) the scatter plots show: the first metric in table order, and the
    first method/seed combination in sort order for it (one seed's points, labelled as such)."""
    if observed.height == 0:
        return None, {}
    metric = observed["metric"][0]
    if not extra:
        return metric, {}
    first = (observed.filter(pl.col("metric") == metric).select(extra).unique()
             .sort(extra, nulls_last=True).row(0, named=True))
    return metric, first


def _scatter_png(variant: str, sts: pl.DataFrame, observed: pl.DataFrame, corr: pl.DataFrame,
                 metric: str | None, group: dict) -> bytes:
    obs = _filter_eq(observed.filter(pl.col("metric") == metric), group) if metric else None
    if obs is not None:
        data = (sts.select("model", "sft", "layer", "n_top", "domain",
                           pl.col(variant).cast(pl.Float64).alias("x"))
                .join(obs.select("model", "sft", "domain",
                                 pl.col("delta").cast(pl.Float64).abs().alias("y")),
                      on=["model", "sft", "domain"], how="inner"))
    else:
        data = pl.DataFrame(schema={"model": pl.String, "sft": pl.String, "layer": pl.Int64,
                                    "n_top": pl.Int64, "domain": pl.String, "x": pl.Float64,
                                    "y": pl.Float64})
    rows = data.select("model", "sft", "layer").unique().sort("model", "sft", "layer").rows()
    cols = sorted(data["n_top"].unique().to_list())
    multi = data.select("model", "sft").unique().height > 1
    nr, nc = max(len(rows), 1), max(len(cols), 1)

    fig = Figure(figsize=(4.6 * nc, 3.9 * nr), layout="constrained")
    FigureCanvasAgg(fig)  # Agg explicitly, without touching pyplot's global backend
    axes = fig.subplots(nr, nc, squeeze=False)
    what = ", ".join([f"metric={metric}"]
                     + [f"{k}={v}" for k, v in group.items() if v is not None])
    fig.suptitle(f"{variant} vs |Δ| ({what})" if metric else f"{variant}: no observed Δ")
    for ax in axes.flat:
        ax.set_axis_off()
    for i, (model, sft, layer) in enumerate(rows):
        for j, n_top in enumerate(cols):
            ax = axes[i, j]
            p = data.filter((pl.col("model") == model) & (pl.col("sft") == sft)
                            & (pl.col("layer") == layer)
                            & (pl.col("n_top") == n_top)).sort("domain")
            if p.height == 0:
                continue
            ax.set_axis_on()
            x, y = p["x"].to_numpy(), p["y"].to_numpy()
            ax.scatter(x, y, s=18)
            for xi, yi, d in zip(x, y, p["domain"].to_list()):
                if math.isfinite(xi) and math.isfinite(yi):
                    ax.annotate(d, (xi, yi), fontsize=7, xytext=(3, 3),
                                textcoords="offset points")
            ok = np.isfinite(x) & np.isfinite(y)
            if ok.sum() >= 2 and np.ptp(x[ok]) > 0:
                slope, icpt = np.polyfit(x[ok], y[ok], 1)
                xs = np.array([x[ok].min(), x[ok].max()])
                ax.plot(xs, slope * xs + icpt, lw=1, color="0.4")
            ax.set_xlabel(variant)
            ax.set_ylabel("|Δ|")
            head = f"{model}/{sft} " if multi else ""
            lines = [f"{head}L{layer} N={n_top}"]
            for protocol in st.PROTOCOLS:
                r = _filter_eq(corr, {"model": model, "sft": sft, "layer": layer,
                                      "n_top": n_top, "variant": variant, "target": "abs",
                                      "protocol": protocol, "metric": metric, **group})
                if r.height:
                    rr = r.row(0, named=True)
                    lines.append(f"{protocol}: ρ = {_fmt_rho(rr)}, n = {rr['n_domains']}")
            ax.set_title("\n".join(lines), fontsize=8)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    return buf.getvalue()


# ---------------------------------------------------------------- report

def _headline_rows(corr: pl.DataFrame, variants: list[str], keys: list[str]) -> list[dict]:
    """target=abs rows ordered variant-major (in STS column order), then layer, n_top, protocol
    (all before extremes), metric, method, seed, so each variant's results read as one block."""
    if corr.height == 0 or "target" not in corr.columns:
        return []
    order = {v: i for i, v in enumerate(variants)}
    prot = {p: i for i, p in enumerate(st.PROTOCOLS)}
    df = corr.filter(pl.col("target") == "abs").with_columns(
        _v=pl.col("variant").replace_strict(order, default=len(order), return_dtype=pl.Int64),
        _p=pl.col("protocol").replace_strict(prot, default=len(prot), return_dtype=pl.Int64))
    by = ["model", "sft", "_v", "variant", "layer", "n_top", "_p", "protocol",
          *[k for k in keys if k not in ("model", "sft", "variant", "layer", "n_top",
                                         "protocol")]]
    return df.sort(by, nulls_last=True, maintain_order=True).drop("_v", "_p").to_dicts()


def _row_label(r: dict, extra: list[str]) -> str:
    parts = [f"{r['model']}/{r['sft']}", str(r["variant"]), f"layer {r['layer']}",
             f"N={r['n_top']}", f"{r['protocol']} domains"]
    return ", ".join(parts + [f"{k}={r[k]}" for k in extra])


def write_report(corr: pl.DataFrame, sts: pl.DataFrame, observed: pl.DataFrame, outdir: Path, *,
                 title: str, provenance: dict, ci: float = 0.95,
                 extra_tables: list[tuple[str, pl.DataFrame]] = ()) -> dict[str, Path]:
    """Write correlations.parquet, summary.md, summary.html and scatter_<variant>.png into
    ``outdir``; return file name -> path. ``ci`` only labels the intervals (the level the
    correlation table was computed with)."""
    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    variants = st.sts_variants(sts)
    extra = [c for c in st.EXTRA_KEYS if c in observed.columns]
    corr_extra = [c for c in st.EXTRA_KEYS if c in corr.columns]
    written: dict[str, Path] = {}

    path = outdir / "correlations.parquet"
    write_parquet(corr.to_arrow(), path, metadata={"title": title, "provenance": provenance})
    written[path.name] = path

    metric, group = _plot_group(observed, extra)
    images: dict[str, bytes] = {}
    for v in variants:
        name = f"scatter_{_safe_name(v)}.png"
        images[name] = _scatter_png(v, sts, observed, corr, metric, group)
        path = outdir / name
        with atomic_path(path) as tmp:
            Path(tmp).write_bytes(images[name])
        written[name] = path

    blocks: list[tuple] = [("h", 1, title), ("h", 2, "Provenance")]
    blocks.append(_table_block(["key", "value"], [
        [str(k), v if isinstance(v, str) else json.dumps(v, sort_keys=True, default=str)]
        for k, v in provenance.items()]))

    head_keys = ["model", "sft", "variant", "layer", "n_top", "protocol", "metric", *corr_extra]
    abs_rows = _headline_rows(corr, variants, head_keys)
    blocks.append(("h", 2, "Interpretation"))
    blocks.append(("p", f"Pearson ρ between each STS variant and |Δ| (metric {metric}); the paper "
                        "predicts a positive correlation. Intervals are percentile-bootstrap "
                        f"{ci:.0%} CIs over domains."))
    blocks.append(("ul", [
        f"{_row_label(r, corr_extra)}: {interpret(r, ci)}"
        for r in abs_rows if r["metric"] == metric]))

    blocks.append(("h", 2, "Correlation with |Δ|"))
    blocks.append(_table_block(
        [*head_keys, "n", f"Pearson ρ [{ci:.0%} CI]", "Spearman", "perm p"],
        [[*(r[k] for k in head_keys), r["n_domains"], _fmt_rho(r), _fmt(r["spearman"], ".2f"),
          _fmt(r["perm_p"], ".2g")] for r in abs_rows]))

    if "seed" in corr.columns:
        summ = st.seed_summary(corr.filter(pl.col("target") == "abs"))
        keys = [c for c in summ.columns
                if c not in ("target", "n_seeds", "pearson_mean", "pearson_std")]
        blocks.append(("h", 2, "Pearson ρ across seeds (|Δ|)"))
        blocks.append(_table_block([*keys, "seeds", "ρ mean ± std"], [
            [*(r[k] for k in keys), r["n_seeds"],
             f"{_fmt(r['pearson_mean'], '.2f')} ± {_fmt(r['pearson_std'], '.2f')}"]
            for r in summ.to_dicts()]))

    if images:
        blocks.append(("h", 2, "Scatter plots"))
        for name in images:
            blocks.append(("img", name, name[len("scatter_"):-len(".png")] + " vs |Δ|"))

    for heading, table in extra_tables:
        blocks.append(("h", 2, heading))
        blocks.append(_df_block(table))

    blocks.append(("h", 2, "Observed Δ"))
    obs_keys = ["model", "sft", "metric", *extra]
    obs_tab = (observed.select([*obs_keys, "domain", pl.col("delta").cast(pl.Float64)])
               .with_columns(abs_delta=pl.col("delta").abs())
               .sort([*obs_keys, "abs_delta", "domain"], descending=[False] * len(obs_keys)
                     + [True, False], nulls_last=True))
    blocks.append(_df_block(obs_tab))

    blocks.append(("h", 2, "STS scores"))
    sort_cols = [c for c in ("model", "sft", "layer", "n_top", "domain") if c in sts.columns]
    blocks.append(_df_block(sts.sort(sort_cols) if sort_cols else sts))

    for name, text in (("summary.md", _to_markdown(blocks)),
                       ("summary.html", _to_html(title, blocks, images))):
        path = outdir / name
        write_text(path, text)
        written[name] = path
    return written
