import math

import numpy as np
import polars as pl
import pytest

from stsflow.analysis import correlation as st
from stsflow.io.files import read_metadata
from stsflow.report.summary import write_report
from stsflow.report.verdicts import interpret, primary_verdict

DOMAINS = ["biology", "business", "chemistry", "engineering", "health", "law", "math", "physics",
           "history", "other"]
VARIANTS = ["sts_act", "sts_icl", "sts_sq", "sts_act_oracle"]


PRIMARY = {"predictor": "sts_icl", "n_top": 100, "layer": 3, "metric": "acc", "protocol": "all",
           "target": "abs"}


def _inputs(seeds=None, se=False):
    rng = np.random.default_rng(0)
    delta = dict(zip(DOMAINS, rng.normal(scale=3, size=len(DOMAINS)).tolist()))
    rows = [{"model": "qwen", "layer": layer, "sft": "limo", "domain": d, "n_top": n_top,
             **{v: float(abs(delta[d]) + rng.normal()) for v in VARIANTS}, "n_tokens": 500}
            for layer in (3, 7) for n_top in (10, 100) for d in DOMAINS]
    sts = pl.DataFrame(rows)
    obs = pl.DataFrame({"model": "qwen", "sft": "limo", "domain": list(delta),
                        "metric": "acc", "delta": list(delta.values())})
    if se:  # a workflow-measured Δ: per-domain SE and CI
        s = rng.uniform(0.2, 1.5, size=len(DOMAINS))
        obs = obs.with_columns(delta_se=pl.Series(s), ci_low=pl.col("delta") - 1.96 * s,
                               ci_high=pl.col("delta") + 1.96 * s)
    if seeds:
        obs = pl.concat([obs.with_columns(seed=pl.lit(s), method=pl.lit("full"),
                                          delta=pl.col("delta") + 0.3 * s) for s in seeds])
        sts = pl.concat([sts.with_columns(seed=pl.lit(s)) for s in seeds])
    return sts, obs


def _report(tmp_path, seeds=None, primary=PRIMARY, se=False):
    sts, obs = _inputs(seeds, se)
    corr = st.correlation_table(sts, obs, n_boot=200, n_perm=200, seed=0)
    out = tmp_path / "rep"
    paths = write_report(corr, sts, obs, out, title="Qwen | LIMO <test>", primary=primary,
                         provenance={"model": "qwen", "config": {"n_top": [10, 100]}})
    return st.assign_roles(corr, primary), out, paths


def test_write_report_files(tmp_path):
    corr, out, paths = _report(tmp_path)
    expected = {"correlations.parquet", "summary.md", "summary.html", "bars.png",
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
    assert html.count("data:image/png;base64,") == len(VARIANTS) + 1  # and the bar chart
    assert "Qwen | LIMO &lt;test&gt;" in html  # escaped
    md = paths["summary.md"].read_text()
    for v in VARIANTS:
        assert v in md and f"(scatter_{v}.png)" in md
    assert "Provenance" in md and "Observed Δ" in md and "STS scores" in md
    assert "engineering" in md
    assert "CI [" in md
    assert "across seeds" not in md
    assert read_metadata(paths["correlations.parquet"])["primary"] == PRIMARY


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


def _sections(md: str) -> list[str]:
    return [line[3:] for line in md.splitlines() if line.startswith("## ")]


def test_primary_analysis_leads_the_summary(tmp_path):
    corr, _, paths = _report(tmp_path, se=True)
    md = paths["summary.md"].read_text()
    assert _sections(md)[:4] == ["Primary analysis (pre-declared)",
                                 "Predicted and observed, domain by domain", "Noise in Δ",
                                 "Provenance"]
    prim = corr.filter(pl.col("role") == "primary")
    assert prim.height == 1
    r = prim.row(0, named=True)
    assert (r["predictor"], r["n_top"], r["layer"], r["protocol"]) == ("sts_icl", 100, 3, "all")
    lead = md.split("## Noise in Δ")[0]
    # the primary row's own numbers, written out independently of the report's formatting
    assert f"{r['pearson']:.2f} [{r['pearson_ci_low']:.2f}, {r['pearson_ci_high']:.2f}]" in lead
    assert f"[{r['pearson_fisher_low']:.2f}, {r['pearson_fisher_high']:.2f}]" in lead
    assert f"{r['perm_p']:.2g}" in lead and f"{r['noise_ceiling']:.2f}" in lead
    assert "predictor sts_icl, N = 100, layer 3, metric acc, all domains" in lead
    assert any(w in lead for w in ("Supported:", "Not established:", "Contradicted:"))
    # every other row is labelled, none of them primary
    roles = set(corr.filter(pl.col("role") != "primary")["role"])
    assert roles == {"exploratory", "descriptive"}
    # noise section: the count of domains whose Δ CI excludes 0, computed here directly
    _, obs = _inputs(se=True)
    n_excl = int(((obs["ci_low"] > 0) | (obs["ci_high"] < 0)).sum())
    assert f"{n_excl} of {len(DOMAINS)}" in md.split("## Provenance")[0]
    assert "delta_se" in md.split("## Observed Δ")[1]


def test_missing_primary_is_stated_plainly(tmp_path):
    _, _, paths = _report(tmp_path, primary=dict(PRIMARY, n_top=50))
    md = paths["summary.md"].read_text()
    lead = md.split("## Noise in Δ")[0]
    assert "NOT IN THE DATA" in lead and "n_top = 50 is not among the computed values [10, 100]" \
        in lead
    corr = pl.read_parquet(paths["correlations.parquet"])
    assert "primary" not in corr["role"].to_list()


def test_extremes_rows_are_descriptive_and_exploratory_rows_holm_adjusted(tmp_path):
    corr, _, paths = _report(tmp_path)
    md = paths["summary.md"].read_text()
    table = md.split("## Correlation with |Δ|")[1].split("\n## ")[0]
    rows = [line for line in table.splitlines() if line.startswith("| qwen")]
    ext = [line for line in rows if "| extremes |" in line]
    assert ext and all("descriptive (domains selected on Δ)" in line for line in ext)
    assert all(line.rstrip(" |").endswith("n/a | n/a") for line in ext)  # no perm p, no Holm p
    expl = corr.filter(pl.col("role") == "exploratory")
    assert expl.height == corr.filter(pl.col("protocol") == "all").height - 1
    # Holm within the family (model, sft, target): here all abs rows but the primary one
    fam = expl.filter(pl.col("target") == "abs")
    p = fam["perm_p"].to_numpy()
    m = p.size
    order = np.argsort(p, kind="stable")
    expected = np.empty(m)
    running = 0.0
    for i, j in enumerate(order):  # the textbook step-down loop
        running = max(running, min(1.0, (m - i) * p[j]))
        expected[j] = running
    assert fam["holm_p"].to_numpy() == pytest.approx(expected)
    assert (fam["holm_p"] >= fam["perm_p"]).all()


def test_report_per_seed_scatter_and_mean_sd(tmp_path):
    corr, out, paths = _report(tmp_path, seeds=[0, 1, 2])
    md = paths["summary.md"].read_text()
    prim = corr.filter(pl.col("role") == "primary")
    assert prim.height == 3  # one per seed, replicates of the one hypothesis
    vals = prim["pearson"].to_numpy()
    assert f"ρ mean ± sd = {vals.mean():.2f} ± {vals.std(ddof=1):.2f}" in md
    # one panel row per (layer, seed): 2 layers x 3 seeds rows, 2 N columns
    from PIL import Image

    _report(tmp_path / "one", seeds=[0])
    h3 = Image.open(paths["scatter_sts_icl.png"]).size[1]
    h1 = Image.open(tmp_path / "one" / "rep" / "scatter_sts_icl.png").size[1]
    assert h3 == pytest.approx(3 * h1, rel=0.02)


def test_primary_verdict_wording():
    row = {"pearson": 0.7, "pearson_ci_low": 0.3, "pearson_ci_high": 0.9, "perm_p": 0.01,
           "n_domains": 10, "noise_ceiling": 0.8}
    assert primary_verdict(row).startswith("Supported:")
    assert "reach ρ ≈ 0.80 on average (the noise ceiling)." in primary_verdict(row)
    assert "permutation p (unadjusted) = 0.01" in primary_verdict(row)
    assert "above it" not in primary_verdict(row)
    # ρ above the ceiling: an expected value, so possible by chance, and said so
    above = primary_verdict(dict(row, noise_ceiling=0.6))
    assert "This ρ is above it: the ceiling is an expected value, not a bound" in above
    assert "by chance" in above and "would not exceed" not in above
    # a signed target: which way the metric moved, never "as predicted"
    signed = dict(row, target="signed", metric="nll")
    assert primary_verdict(signed).startswith("Established: a higher score goes with a higher "
                                              "signed Δ nll (more loss or less gain)")
    assert "as predicted" not in primary_verdict(signed)
    neg_acc = dict(row, target="signed", metric="option_loglik", pearson=-0.7,
                   pearson_ci_low=-0.9, pearson_ci_high=-0.3)
    assert "lower signed Δ option_loglik (more loss or less gain)" in primary_verdict(neg_acc)
    assert not primary_verdict(neg_acc).startswith("Contradicted")
    assert primary_verdict(dict(row, perm_p=0.2)).startswith("Not established: the interval")
    assert primary_verdict(dict(row, pearson_ci_low=-0.1)).startswith("Not established:")
    neg = dict(row, pearson=-0.7, pearson_ci_low=-0.9, pearson_ci_high=-0.3)
    assert primary_verdict(neg).startswith("Contradicted:")
    assert "too noisy" in primary_verdict(dict(row, noise_ceiling=0.3))
    assert "n/a" in primary_verdict(dict(row, noise_ceiling=math.nan))


def test_config_rejects_a_primary_the_run_cannot_produce():
    from stsflow.config import checks as config

    cfg = {"models": {"m": {"layers": {3: {}, 7: {}}}}, "sts": {"n_top": [10, 100]},
           "finetune": {"enabled": False}, "evaluate": {"metrics": ["nll"]},
           "observed": [{"metric": "given"}],
           "report": {"primary": {"predictor": "sts_icl_oracle", "n_top": 50, "layer": 5,
                                  "metric": "nll", "protocol": "extremes", "target": "abs"}}}
    problems = config.report_primary_problems(cfg)
    fields = [p.split(":")[0] for p in problems]
    assert fields == ["report.primary.n_top", "report.primary.layer", "report.primary.protocol",
                      "report.primary.predictor", "report.primary.metric"]
    assert all("Fix:" in p for p in problems)
    ok = dict(cfg, report={"primary": {"predictor": "sts_icl", "n_top": None, "layer": None,
                                       "metric": None, "protocol": "all", "target": "abs"}})
    assert config.report_primary_problems(ok) == []


def test_sae_quality_table_and_warnings_lead_the_report(tmp_path):
    """A prepared SAE's figures land in the quality table, and its warnings are listed under the
    title, before the primary analysis."""
    import json

    from stsflow.jobs.report import sae_quality_table

    d = tmp_path / "L3"
    d.mkdir()
    warn = {"kind": "low_loss_recovered", "value": 0.4, "threshold": 0.7,
            "message": "loss recovered 0.4 is below 0.7"}
    (d / "stsflow_sae.json").write_text(json.dumps(
        {"kind": "registry", "release": "rel", "sae_id": "layer_3", "hook_name":
         "blocks.3.hook_resid_post", "width": 64, "l0": 12.5, "fraction_variance_explained": 0.8,
         "loss_recovered": 0.4, "ce_clean": 2.0, "ce_with_sae": 3.2, "ce_zero_ablation": 4.0,
         "eval_tokens": 900, "warnings": [warn]}))
    table, warnings = sae_quality_table({(3, "main"): d})
    row = table.row(0, named=True)
    assert (row["layer"], row["sae"], row["source"], row["l0"], row["loss_recovered"],
            row["warnings"]) == (3, "main", "rel/layer_3", 12.5, 0.4, "low_loss_recovered")
    assert len(warnings) == 1
    assert warnings[0].startswith("L3/main: loss recovered 0.4 is below 0.7 on 900 held-out")
    trained = tmp_path / "L3k8"
    trained.mkdir()
    (trained / "stsflow_sae.json").write_text(json.dumps(
        {"kind": "train", "path": ".", "architecture": "topk", "width": 64,
         "train": {"k": 8, "width": 64}, "l0": 8.0, "warnings": []}))
    hub = tmp_path / "L3hub"
    hub.mkdir()
    (hub / "stsflow_sae.json").write_text(json.dumps(
        {"kind": "hub", "repo": "org/saes", "repo_path": "blocks.3.hook_resid_post",
         "revision": "0123456789abcdef0123", "path": ".", "width": 64, "warnings": []}))
    table, _ = sae_quality_table({(3, "main"): d, (3, "k8"): trained, (3, "hub"): hub})
    assert table.select("sae", "source", "k", "l0").rows() == [
        ("hub", "org/saes/blocks.3.hook_resid_post@0123456789ab", None, None),
        ("k8", "trained here", 8, 8.0), ("main", "rel/layer_3", None, 12.5)]
    # an SAE prepared before the dead-feature rule existed (its manifest has no such warning):
    # the report applies the rule to its figures
    (d / "stsflow_sae.json").write_text(json.dumps(
        {**json.loads((d / "stsflow_sae.json").read_text()), "dead_fraction": 0.6,
         "loss_recovered": 0.9, "warnings": []}))
    table, warnings = sae_quality_table({(3, "main"): d})
    row = table.row(0, named=True)
    assert (row["dead_fraction"], row["warnings"]) == (0.6, "dead_features")
    assert warnings == ["L3/main: 60.0% of the SAE's features are dead (active on none of its 900 "
                        "held-out tokens): STS ranks SAE dimensions, and this dictionary has few "
                        "live ones to rank"]
    from stsflow.report.summary import write_report

    corr = pl.DataFrame({"model": ["m"], "sft": ["s"]})
    sts = pl.DataFrame({"model": ["m"], "sft": ["s"], "layer": [3], "n_top": [5],
                        "domain": ["law"], "sts_act": [1.0]})
    obs = pl.DataFrame({"model": ["m"], "sft": ["s"], "domain": ["law"], "metric": ["given"],
                        "delta": [0.1]})
    write_report(corr.clear(), sts, obs, tmp_path / "out", title="T", provenance={},
                 warnings=["SAE " + w for w in warnings])
    md = (tmp_path / "out" / "summary.md").read_text()
    assert md.index("## Warnings") < md.index("SAE L3/main: 60.0% of the SAE") < \
        md.index("## Prov")


METHODS = ("lora", "full")


def _stacked():
    """An STS table with ICL rows (seed, no method) stacked on oracle rows (method and seed), as
    the report job stacks the STS and oracle tables, and a workflow-measured Δ per run: two
    fine-tuning methods, two seeds."""
    rng = np.random.default_rng(3)
    doms = DOMAINS[:6]
    icl = pl.DataFrame([{"model": "m", "sft": "s", "layer": 3, "sae": "main", "n_top": 100,
                         "domain": d, "seed": seed, "sts_icl": float(rng.random())}
                        for seed in (0, 1) for d in doms])
    oracle = pl.DataFrame([{"model": "m", "sft": "s", "layer": 3, "sae": "main", "n_top": 100,
                            "domain": d, "method": m, "seed": seed,
                            "sts_icl_oracle": float(rng.random())}
                           for m in METHODS for seed in (0, 1) for d in doms])
    obs = pl.DataFrame([{"model": "m", "sft": "s", "method": m, "seed": seed, "domain": d,
                         "metric": "acc", "delta": float(rng.normal()),
                         "ci_low": -2.0, "ci_high": 2.0}
                        for m in METHODS for seed in (0, 1) for d in doms])
    return pl.concat([icl, oracle], how="diagonal_relaxed"), obs


@pytest.mark.parametrize("predictor", ["sts_icl", "sts_icl_oracle"])
def test_bars_and_scatter_pair_each_predictor_with_its_own_run(predictor):
    """Regression: with the oracle rows stacked in, an ICL predictor's rows (method null) were
    paired by method and matched nothing, so every ICL scatter plot came out empty. An ICL
    seed's score goes with the Δ of every method of that seed, each kept apart by its method;
    an oracle's with its own method's."""
    from stsflow.report.rows import bars_data, predictor_rows

    sts, obs = _stacked()
    primary = dict(PRIMARY, predictor=predictor, sae="main")
    got = bars_data(sts, obs, primary)
    assert got.height == 24  # 6 domains × 2 seeds × 2 methods, each once
    assert got.select("method", "seed", "domain").unique().height == 24
    own = sts.filter(pl.col(predictor).is_not_null())
    want = {(r.get("method"), r["seed"], r["domain"]): r[predictor]
            for r in own.iter_rows(named=True)}
    delta = {(r["method"], r["seed"], r["domain"]): r["delta"] for r in obs.iter_rows(named=True)}
    for r in got.iter_rows(named=True):
        key = (r["method"] if predictor.endswith("_oracle") else None, r["seed"], r["domain"])
        assert r["score"] == want[key]
        assert r["delta"] == delta[(r["method"], r["seed"], r["domain"])]
    data, _ = st.pair_tables(predictor_rows(sts, predictor), obs)
    assert data.height == 24 and data[predictor].null_count() == 0


def test_bars_pair_config_deltas_with_every_run_beside_the_workflows():
    """Δ given in the config (no method, no seed) stacked on the workflow's own: under its
    metric each ICL seed's score meets the given Δ; under the workflow's metric, each run's; the
    chart draws both, a CI that misses its estimate included (error bars clipped at 0)."""
    from stsflow.report.figures import bars_png
    from stsflow.report.rows import bars_data

    sts, obs = _stacked()
    doms = DOMAINS[:6]
    given = pl.DataFrame({"model": "m", "sft": "s", "domain": doms, "metric": "given",
                          "delta": [0.5 * i for i in range(6)]})
    both = pl.concat([obs, given], how="diagonal_relaxed")
    got = bars_data(sts, both, dict(PRIMARY, predictor="sts_icl", sae="main", metric="given"))
    assert got.height == 12 and got["method"].null_count() == 12  # 2 seeds × 6 domains
    for r in got.iter_rows(named=True):
        assert r["delta"] == 0.5 * doms.index(r["domain"])
    measured = bars_data(sts, both, dict(PRIMARY, predictor="sts_icl", sae="main", metric="acc"))
    assert measured.height == 24 and measured["method"].null_count() == 0
    odd = measured.with_columns(ci_low=pl.col("delta") + 1.0)  # a CI above its estimate
    assert bars_png(odd, PRIMARY)[:4] == b"\x89PNG"


def synthetic_cards(tmp_path):
    """Cards built by the real builder on two small random shards (no model: a fake decoder and
    lens), enough for the report's cards section."""
    import pyarrow as pa

    from stsflow.features.shards import shard_schema
    from stsflow.io.files import write_parquet
    from stsflow.report.cards import build_cards
    from stsflow.scores.shift import ranked

    rng = np.random.default_rng(0)
    width, shards = 16, {}
    for kind, name in (("sft", "limo"), ("domain", "law")):
        rows = []
        for doc in range(4):
            for pos in range(12):
                idx = sorted(rng.choice(width, 3, replace=False).tolist())
                rows.append({"doc_id": doc, "pos": pos, "token_id": int(rng.integers(0, 50)),
                             "feat_idx": idx, "feat_val": rng.random(3).tolist(),
                             "counted": pos > 1})
        path = tmp_path / f"{name}.parquet"
        write_parquet(pa.Table.from_pylist(rows, schema=shard_schema("float32")), path,
                      metadata={"width": width})
        shards[(kind, name)] = path
    shifts = {"predicted": pl.from_arrow(ranked(rng.random(width), rng.normal(size=width))),
              "true-full": pl.from_arrow(ranked(rng.random(width), rng.normal(size=width)))}
    lens = (lambda dims: ([[(f"<up{d}>", 1.0)] for d in dims], [[(f"<dn{d}>", -1.0)]
                                                                  for d in dims]))
    return build_cards(shifts, shards, n_top=4, contexts=2, window=3,
                       decode=lambda ids: "".join(f"<{i}&>" for i in ids), lens=lens,
                       neuronpedia="https://www.neuronpedia.org/x/1-res", keys={
                           "model": "qwen", "layer": 3, "sae": "main", "sft": "limo",
                           "seed": 0})


def test_report_shows_the_feature_cards(tmp_path):
    cards = synthetic_cards(tmp_path)
    sts, obs = _inputs()
    corr = st.correlation_table(sts, obs, n_boot=200, n_perm=200, seed=0)
    paths = write_report(corr, sts, obs, tmp_path / "rep", title="t", primary=PRIMARY,
                         provenance={"model": "qwen"}, cards=cards)
    md, html = paths["summary.md"].read_text(), paths["summary.html"].read_text()
    section = md.split("## Feature cards: what moved")[1].split("\n## ")[0]
    assert section.count("\n| predicted |") == 4 and section.count("\n| true-full |") == 4
    body = html.split('id="cards-table"')[1].split("</script>")[0]
    assert body.count('<tr class="card">') == cards.height  # one row per card
    for r in cards.iter_rows(named=True):
        assert f'href="https://www.neuronpedia.org/x/1-res/{r["dim"]}"' in body
        assert f"<up{r['dim']}>".replace("<", "&lt;").replace(">", "&gt;") in body
        for c in r["contexts"]:  # each context with its active token marked, escaped
            token = c["token"].replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
            assert f"<mark>{token}</mark>" in body
        for c in r["corpora"]:  # every corpus's frequency on the card
            assert f"<tr><td>{c['corpus']}</td><td>{c['tokens']}</td>" in body
    assert "<1&>" not in html and "&lt;1&amp;&gt;" in html  # decoded text never raw HTML
    assert "<script>" in html and 'id="cards-filter" type="search" hidden' in html


def test_report_renders_in_a_real_browser(tmp_path):
    """The summary in headless Chromium: no console message at all (the page logs nothing, so an
    error or an uncaught exception shows), every section of the contents present and non-empty,
    the cards' filter shown (the script ran), and a screenshot saved."""
    from workflow_helpers import render_in_browser, report_sections

    sts, obs = _inputs(se=True)
    corr = st.correlation_table(sts, obs, n_boot=200, n_perm=200, seed=0)
    cards = synthetic_cards(tmp_path)
    paths = write_report(corr, sts, obs, tmp_path / "rep", title="t", primary=PRIMARY,
                         provenance={"model": "qwen"}, cards=cards)
    dom, console = render_in_browser(paths["summary.html"], tmp_path / "summary.png")
    assert console == []
    found = report_sections(dom)
    sections = found["sections"]
    assert found["links"] == list(sections)  # the contents link every section, in order
    for sid, s in sections.items():
        assert s["text"] + s["img"] + s["rows"] > 0, f"empty section {s['title']}"
    assert dom.count('<tr class="card">') == cards.height
    assert sections["predicted-and-observed-domain-by-domain"]["img"] == 2  # bars and scatter
    assert '<input id="cards-filter" type="search" placeholder' in dom  # no longer hidden
    assert (tmp_path / "summary.png").stat().st_size > 10_000


def test_make_screenshots_renders_every_summary(tmp_path, capsys):
    """`make screenshots` (stsflow.report.browser): each summary of a results folder into
    results/screenshots/<model>/<sft>/summary.png; no summary, exit 1."""
    from workflow_helpers import chromium

    from stsflow.report.browser import main

    chromium()  # skips (or fails under CI) without a browser
    sts, obs = _inputs()
    corr = st.correlation_table(sts, obs, n_boot=200, n_perm=200, seed=0)
    write_report(corr, sts, obs, tmp_path / "results/reports/qwen/limo", title="t",
                 primary=PRIMARY, provenance={"model": "qwen"})
    assert main([str(tmp_path / "results")]) == 0
    shot = tmp_path / "results/screenshots/qwen/limo/summary.png"
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not list(shot.parent.glob(".*"))  # no temporary file left
    assert main([str(tmp_path / "empty")]) == 1
    assert "no summary.html" in capsys.readouterr().err


PROBE = """<script>
(function () {
  var t = document.getElementById('cards-table'), body = t.tBodies[0];
  var box = document.getElementById('cards-filter');
  function shown() {
    return Array.prototype.filter.call(body.rows, function (r) { return !r.hidden; }).length;
  }
  function column(i) {
    return Array.prototype.map.call(body.rows, function (r) {
      return Number(r.cells[i].getAttribute('data-v'));
    });
  }
  var out = {};
  box.value = 'TRUE-FULL';
  box.dispatchEvent(new Event('input'));
  out.filtered = shown();
  box.value = '';
  box.dispatchEvent(new Event('input'));
  out.cleared = shown();
  var dim = t.tHead.rows[0].cells[3];
  dim.click();
  out.asc = column(3);
  dim.click();
  out.desc = column(3);
  var pre = document.createElement('pre');
  pre.id = 'probe';
  pre.textContent = JSON.stringify(out);
  document.body.appendChild(pre);
})();
</script>"""


def test_cards_filter_and_sort_in_a_real_browser(tmp_path):
    """The cards' script driven in Chromium: typing in the filter hides the rows that do not
    contain the text (case-insensitive), clearing it shows all again, and a click on the dim
    column sorts numerically, a second click reverses."""
    import json
    import re

    from workflow_helpers import render_in_browser

    cards = synthetic_cards(tmp_path)
    sts, obs = _inputs()
    corr = st.correlation_table(sts, obs, n_boot=200, n_perm=200, seed=0)
    paths = write_report(corr, sts, obs, tmp_path / "rep", title="t", primary=PRIMARY,
                         provenance={"model": "qwen"}, cards=cards)
    page = tmp_path / "probe.html"
    page.write_text(paths["summary.html"].read_text().replace("</body>", PROBE + "</body>"))
    dom, console = render_in_browser(page, tmp_path / "probe.png")
    assert console == []
    got = json.loads(re.search(r'<pre id="probe">(.*?)</pre>', dom).group(1)
                     .replace("&quot;", '"'))
    # the rows whose text holds "true-full": that set's cards and the cards it overlaps
    want = sum(1 for r in cards.iter_rows(named=True)
               if r["set"] == "true-full" or "true-full" in r["also_in"])
    assert 0 < want < cards.height and got["filtered"] == want
    assert got["cleared"] == cards.height
    dims = sorted(cards["dim"].to_list())
    assert got["asc"] == dims and got["desc"] == dims[::-1]
