import math

import numpy as np
import polars as pl
import pytest

from stsflow import stats as st
from stsflow.report import interpret, write_report
from stsflow.storage import read_metadata

DOMAINS = ["biology", "business", "chemistry", "engineering", "health", "law", "math", "physics",
           "history", "other"]
VARIANTS = ["sts_act", "sts_icl", "sts_sq", "sts_act_oracle"]


def _inputs(seeds=None):
    rng = np.random.default_rng(0)
    delta = dict(zip(DOMAINS, rng.normal(scale=3, size=len(DOMAINS)).tolist()))
    rows = [{"model": "qwen", "layer": layer, "sft": "limo", "domain": d, "n_top": n_top,
             **{v: float(abs(delta[d]) + rng.normal()) for v in VARIANTS}, "n_tokens": 500}
            for layer in (3, 7) for n_top in (10, 100) for d in DOMAINS]
    sts = pl.DataFrame(rows)
    obs = pl.DataFrame({"model": "qwen", "sft": "limo", "domain": list(delta),
                        "metric": "acc", "delta": list(delta.values())})
    if seeds:
        obs = pl.concat([obs.with_columns(seed=pl.lit(s), method=pl.lit("full"),
                                          delta=pl.col("delta") + 0.3 * s) for s in seeds])
    return sts, obs


def _report(tmp_path, seeds=None):
    sts, obs = _inputs(seeds)
    corr = st.correlation_table(sts, obs, n_boot=200, n_perm=200, seed=0)
    out = tmp_path / "rep"
    paths = write_report(corr, sts, obs, out, title="Qwen | LIMO <test>",
                         provenance={"model": "qwen", "config": {"n_top": [10, 100]}})
    return corr, out, paths


def test_write_report_files(tmp_path):
    corr, out, paths = _report(tmp_path)
    expected = {"correlations.parquet", "summary.md", "summary.html",
                *(f"scatter_{v}.png" for v in VARIANTS)}
    assert set(paths) == expected
    assert all(p.parent == out and p.is_file() for p in paths.values())
    # atomic writes: nothing but the final files, no leftover temporaries
    assert {p.name for p in out.iterdir()} == expected
    for v in VARIANTS:
        assert paths[f"scatter_{v}.png"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    back = pl.read_parquet(paths["correlations.parquet"])
    assert back.equals(corr)
    assert read_metadata(paths["correlations.parquet"])["provenance"]["model"] == "qwen"

    html = paths["summary.html"].read_text()
    assert html.count("data:image/png;base64,") == len(VARIANTS)
    assert "Qwen | LIMO &lt;test&gt;" in html  # escaped
    md = paths["summary.md"].read_text()
    for v in VARIANTS:
        assert v in md and f"(scatter_{v}.png)" in md
    assert "Provenance" in md and "Observed Δ" in md and "STS scores" in md
    assert "engineering" in md
    assert "CI [" in md
    assert "across seeds" not in md


def test_write_report_with_seeds_and_rewrite(tmp_path):
    corr, out, paths = _report(tmp_path, seeds=[0, 1, 2])
    md = paths["summary.md"].read_text()
    assert "across seeds" in md and " ± " in md
    # overwriting an existing report stays clean too
    _report(tmp_path, seeds=[0, 1, 2])
    assert not [p for p in out.iterdir() if p.name.startswith(".") or p.suffix == ".tmp"]


def _row(rho, lo, hi, n=8, protocol="all"):
    return {"pearson": rho, "pearson_ci_low": lo, "pearson_ci_high": hi, "n_domains": n,
            "perm_p": 0.2, "protocol": protocol}


def test_interpret_follows_the_numbers():
    s = interpret(_row(0.31, -0.40, 0.80))
    assert s.startswith("ρ = 0.31, 95% CI [-0.40, 0.80] over 8 domains")
    assert "not distinguishable from zero" in s
    assert "positive correlation" in interpret(_row(0.8, 0.3, 0.95))
    assert "negative correlation" in interpret(_row(-0.8, -0.95, -0.3))
    assert "inflates" in interpret(_row(0.8, 0.3, 0.95, protocol="extremes"))
    assert "undefined" in interpret(_row(math.nan, math.nan, math.nan, n=2))
    assert "no bootstrap CI" in interpret(_row(0.5, math.nan, math.nan))


def test_write_report_empty_correlations(tmp_path):
    sts, obs = _inputs()
    corr = st.correlation_table(sts, obs.with_columns(sft=pl.lit("x")), n_boot=0, n_perm=0)
    paths = write_report(corr, sts, obs.with_columns(sft=pl.lit("x")), tmp_path, title="t",
                         provenance={})
    assert "_no rows_" in paths["summary.md"].read_text()


def test_write_report_failure_leaves_no_partial_file(tmp_path, monkeypatch):
    from pathlib import Path

    sts, obs = _inputs()
    corr = st.correlation_table(sts, obs, n_boot=0, n_perm=0)

    def half_then_fail(self, data):  # a crash halfway through writing a plot
        with open(self, "wb") as f:
            f.write(data[: len(data) // 2])
        raise OSError("disk full")

    monkeypatch.setattr(Path, "write_bytes", half_then_fail)
    with pytest.raises(OSError):
        write_report(corr, sts, obs, tmp_path, title="t", provenance={})
    assert {p.name for p in tmp_path.iterdir()} == {"correlations.parquet"}
