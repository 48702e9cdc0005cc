"""What the report lets a reader conclude, through the report job (stsflow.jobs.report.report)
on tables written as the workflow writes them: one primary method, whose seeds are its only
primary rows; every other run's rows exploratory with the Holm p of their family beside the raw
p, in correlations.parquet, by_run.parquet and the text; the overlap beside its chance level
(scipy.stats.hypergeom); the context overflow and short D_N stated before any result."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
from scipy.stats import hypergeom

from stsflow.config.settings import ReportSettings
from stsflow.features.stats import Stats
from stsflow.io.files import write_parquet
from stsflow.jobs import reduce
from stsflow.jobs import report as report_job
from stsflow.scores.shift import ranked

DOMAINS = [f"d{i}" for i in range(8)]
RUNS = [("lora", 0), ("lora", 1), ("grpo", 0)]
PRIMARY = {"predictor": "sts_icl", "n_top": 5, "layer": 1, "sae": "main", "metric": "acc",
           "protocol": "all", "target": "abs", "method": "lora"}


def holm(p):
    """Holm's step-down adjustment, written out."""
    p = np.asarray(p, dtype=float)
    order = np.argsort(p, kind="stable")
    m, out, running = len(p), np.empty(len(p)), 0.0
    for i, j in enumerate(order):
        running = max(running, min(1.0, (m - i) * p[j]))
        out[j] = running
    return out


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    d = tmp_path_factory.mktemp("supports")
    rng = np.random.default_rng(4)
    truth = rng.normal(0, 1, len(DOMAINS))
    sts_rows, oracle_rows, obs_rows = [], [], []
    for seed in (0, 1):
        for i, dom in enumerate(DOMAINS):
            sts_rows.append({"model": "m", "layer": 1, "sae": "main", "sft": "s", "domain": dom,
                             "n_top": 5, "sts_icl": abs(truth[i]) + rng.normal(0, 0.3),
                             "sts_act": rng.normal(), "n_tokens": 50,
                             "n_effective": 5, "n_live": 20, "seed": seed})
    for method, seed in RUNS:
        for i, dom in enumerate(DOMAINS):
            oracle_rows.append({"model": "m", "layer": 1, "sae": "main", "sft": "s",
                                "domain": dom, "n_top": 5, "method": method, "seed": seed,
                                "sts_icl_oracle": abs(truth[i]) + rng.normal(0, 0.5),
                                "n_tokens": 50, "n_effective": 3 if method == "grpo" else 5})
            delta = truth[i] * (1 if method == "lora" else 0.2) + rng.normal(0, 0.1)
            obs_rows.append({"model": "m", "sft": "s", "method": method, "seed": seed,
                             "domain": dom, "metric": "acc", "delta": delta,
                             "delta_se": 0.05, "ci_low": delta - 0.1, "ci_high": delta + 0.1})
    tables = {}
    for name, rows in (("sts", sts_rows), ("sts_oracle", oracle_rows), ("observed", obs_rows)):
        tables[name] = d / f"{name}.parquet"
        write_parquet(pl.DataFrame(rows).to_arrow(), tables[name])
    # shift files: the overlap table through its job
    pred = np.where(rng.random(40) < 0.5, rng.random(40), 0.0)
    shifts = {"pred": pred, "lora": rng.random(40), "grpo": np.where(pred > 0, pred, 0.0)}
    for name, v in shifts.items():
        write_parquet(ranked(v, np.zeros(40)), d / f"shift_{name}.parquet")
    true = {(m, s, 1, "main"): d / f"shift_{m}.parquet" for m, s in RUNS}
    tables["overlap"] = d / "overlap.parquet"
    reduce.overlap_table("m", "s", {(1, "main", 0): d / "shift_pred.parquet",
                                    (1, "main", 1): d / "shift_pred.parquet"}, true, [5],
                         tables["overlap"])
    # coverage: a domain's ICL run with 2 of its 4 queries beyond the context (warn)
    s = Stats(width=8, n_tokens=40)
    for mode, over in (("plain", 0), ("icl", 2)):
        write_parquet(s.table(), d / f"law_{mode}.stats.parquet", {
            "n_tokens": 40, "n_queries": 4, "mode": mode,
            "selection": {"n_available": 4, "n_selected": 4, "n_truncated": 0},
            "context": {"limit": 300, "why": "max_position_embeddings",
                        "runs": {mode: {"prefix_tokens": 100, "n_queries": 4,
                                        "n_overflow": over}}}})
    tables["coverage"] = d / "coverage.parquet"
    reduce.coverage_table("m", "s", {("domain", "law", m): d / f"law_{m}.stats.parquet"
                                     for m in ("plain", "icl")}, {}, tables["coverage"],
                          d / "coverage.csv")
    out = d / "report"
    report_job.report(tables["sts"], [], out, title="T", primary=PRIMARY,
                      settings=ReportSettings(n_boot=200, n_perm=400, seed=0),
                      provenance={"model": "m"}, observed=tables["observed"],
                      sts_oracle=tables["sts_oracle"], overlap=tables["overlap"],
                      coverage=tables["coverage"])
    return d, out, shifts


def test_one_primary_method_and_holm_p_for_every_other_run(written):
    _, out, _ = written
    corr = pl.read_parquet(out / "correlations.parquet")
    prim = corr.filter(pl.col("role") == "primary")
    assert sorted(prim.select("method", "seed").rows()) == [("lora", 0), ("lora", 1)]
    assert prim["predictor"].unique().to_list() == ["sts_icl"]
    assert (prim["holm_p"] == prim["perm_p"]).all()  # replicates of the one test: unadjusted
    grpo = corr.filter(pl.col("method") == "grpo", pl.col("role") == "exploratory",
                       pl.col("predictor").is_in(["sts_icl", "sts_act", "sts_icl_oracle"]))
    # a family: grpo's seed-0 rows of the paper's STS family at one target, every metric
    for target in ("abs", "signed"):
        fam = grpo.filter(pl.col("target") == target)
        assert fam.height == 3
        np.testing.assert_allclose(fam["holm_p"].to_numpy(), holm(fam["perm_p"].to_numpy()))
    row = grpo.filter(pl.col("predictor") == "sts_icl", pl.col("target") == "abs")
    assert row["holm_p"][0] > row["perm_p"][0]  # adjusted: the family has 3 rows
    by_run = pl.read_parquet(out / "by_run.parquet")
    for r in by_run.filter(pl.col("metric") == "acc").iter_rows(named=True):
        want = corr.filter(pl.col("method") == r["method"], pl.col("seed") == r["seed"],
                           pl.col("predictor") == "sts_icl", pl.col("target") == "abs",
                           pl.col("protocol") == "all").row(0, named=True)
        assert (r["icl_perm_p"], r["icl_holm_p"], r["icl_role"]) == (
            want["perm_p"], want["holm_p"], want["role"])
    assert by_run.filter(pl.col("method") == "grpo")["icl_role"][0] == "exploratory"


def test_every_p_printed_says_whether_it_is_adjusted(written):
    _, out, _ = written
    md = (out / "summary.md").read_text()
    assert "| perm p |" not in md and "| p |" not in md
    assert md.count("perm p (unadjusted)") >= 3 and "Holm p (adjusted)" in md
    assert "run lora (every seed)" in md  # the declaration names the primary run
    for line in md.splitlines():  # each sentence that quotes a p says which
        if " p = " in line:
            assert "Holm-adjusted p" in line or "(unadjusted" in line, line


def test_overlap_beside_its_chance_level(written):
    d, out, shifts = written
    ov = pl.read_parquet(d / "overlap.parquet")
    r = ov.filter(pl.col("method") == "lora", pl.col("seed") == 0).row(0, named=True)
    pred, true = shifts["pred"], shifts["lora"]
    moving = np.flatnonzero(pred > 0)
    p_top, t_top = set(np.argsort(-pred)[:5]), set(np.argsort(-true)[:5])
    hits, could = len(p_top & t_top), len(t_top & set(moving))
    assert r["overlap"] == hits / 5 and r["n_over_width"] == 5 / 40
    assert r["overlap_chance"] == pytest.approx(hypergeom.mean(len(moving), could, 5) / 5)
    assert r["overlap_p"] == pytest.approx(hypergeom.sf(hits - 1, len(moving), could, 5))
    by_run = pl.read_parquet(out / "by_run.parquet").filter(pl.col("method") == "lora",
                                                            pl.col("seed") == 0)
    assert by_run["overlap_chance"][0] == r["overlap_chance"]
    md = (out / "summary.md").read_text()
    assert "overlap (chance, p unadjusted)" in md and "hypergeometric" in md


def test_inputs_caveats_come_before_any_result(written):
    _, out, _ = written
    md = (out / "summary.md").read_text()
    warnings = md[md.index("## Warnings"):md.index("## Primary analysis")]
    assert "2 of 4 queries (50%) of domain law (icl run)" in warnings
    assert "ran past the positions it was trained on" in warnings
    # grpo's true D_N at N = 5 holds 3 dimensions: said, never padded
    assert "D_N at N = 5 (layer 1/main, true shift of grpo, seed 0) holds 3" in warnings
    cov = pl.read_parquet(written[0] / "coverage.parquet")
    assert cov.filter(pl.col("mode") == "icl")["share_context_overflow"][0] == 0.5
