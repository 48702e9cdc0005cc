"""The reduction rules run in envs/reduce.yaml, which has no torch, transformers, sae-lens, peft,
datasets or gguf. A subprocess that refuses those packages imports the reduction and report jobs
and the imports of every rule script run in that environment, then runs the real reductions and
the report on tiny inputs."""

from __future__ import annotations

import ast
import json
import os
import re
import subprocess
import sys
import textwrap

from conftest import REPO
from workflow_helpers import ALL_RULES, workflow_rules

HEAVY = ["torch", "transformers", "sae_lens", "peft", "datasets", "gguf"]

# Installed first in the subprocess: every import of a heavy package fails as if it were not
# installed (ModuleNotFoundError, also from importlib.util.find_spec, which polars uses to probe
# for torch). Imports made by stsflow itself are recorded; libraries that merely probe for an
# optional torch (polars does) are not our concern.
BLOCKER = textwrap.dedent("""
    import importlib.abc, os, sys, traceback
    HEAVY = set(sys.argv[1].split(","))
    OURS = tuple(os.path.join(sys.argv[3], d) + os.sep for d in ("stsflow", "workflow_scripts"))
    ATTEMPTS = []

    class Refuse(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.partition(".")[0] in HEAVY:
                # the importer: the innermost frame outside importlib and this finder
                importer = next(f for f in reversed(traceback.extract_stack()[:-1])
                                if not f.filename.startswith("<frozen")
                                and not f.filename.endswith("importlib/util.py"))
                if os.path.abspath(importer.filename).startswith(OURS):
                    ATTEMPTS.append((name, f"{importer.filename}:{importer.lineno}"))
                raise ModuleNotFoundError(f"No module named {name!r} (refused)", name=name)
            return None

    sys.meta_path.insert(0, Refuse())
""")

RUN = textwrap.dedent("""
    import importlib, json, os
    from pathlib import Path

    import numpy as np
    import pyarrow as pa

    for module in sys.argv[2].split(","):
        importlib.import_module(module)

    from stsflow.features.stats import Stats
    from stsflow.io.files import write_parquet
    from stsflow.io.manifest import write_manifest
    from stsflow.jobs import reduce, report
    from stsflow.config.settings import ReportSettings

    rng = np.random.default_rng(0)
    width, root = 16, Path("results")

    def stats(path, paired, n_tokens=40):
        s = Stats(width=width, n_tokens=n_tokens, sum=rng.uniform(0, 5, width),
                  sumsq=rng.uniform(5, 20, width), nnz=rng.integers(0, n_tokens, width))
        if paired:
            s.diff_sum, s.diff_sumsq = rng.normal(size=width), rng.uniform(0, 3, width)
        write_parquet(s.table(), path, {"n_tokens": n_tokens, "n_queries": 4,
                                        "selection": {"n_available": 5, "n_selected": 4,
                                                      "n_truncated": 1}})
        return path

    def panel(path, paired, n_queries=4):
        # a panel directory as features.panel_gather writes it (random figures)
        from stsflow.features import panel as pn
        for space, w in (("resid", 8), ("randenc", width)):
            s = Stats(width=w, n_tokens=40, sum=rng.uniform(0, 5, w),
                      sumsq=rng.uniform(5, 20, w), nnz=rng.integers(0, 40, w))
            if paired:
                s.diff_sum, s.diff_sumsq = rng.normal(size=w), rng.uniform(0, 3, w)
            t = s.table()
            if space == "resid":
                t = t.append_column("signed_sum", pa.array(rng.normal(size=w)))
            write_parquet(t, path / (pn.RESID_STATS if space == "resid" else pn.RANDENC_STATS),
                          {"n_tokens": 40})
        write_parquet(pa.table({
            "pos": pa.array([0, 1], pa.int32()),
            "feat_idx": pa.array([[1, 4], [2]], pa.list_(pa.int32())),
            "feat_val": pa.array([[0.5, 1.0], [2.0]], pa.list_(pa.float32()))}),
            path / pn.PREFIX, {"n_tokens": 2})
        write_parquet(pa.table({
            "doc_id": pa.array(range(n_queries), pa.int32()),
            "n_tokens": pa.array([10] * n_queries, pa.int32()),
            "resid": pa.array([rng.normal(size=8).tolist() for _ in range(n_queries)],
                              pa.list_(pa.float32())),
            "sae_idx": pa.array([[0, 3, 5]] * n_queries, pa.list_(pa.int32())),
            "sae_val": pa.array([rng.uniform(0, 1, 3).tolist() for _ in range(n_queries)],
                                pa.list_(pa.float32()))}), path / pn.POOLED, {"n_tokens": 40})
        return path

    a = root / "acts"
    sft_icl = stats(a / "sft_icl.stats.parquet", True)
    sft_tuned = stats(a / "sft_tuned.stats.parquet", True)
    sft_plain = stats(a / "sft_plain.stats.parquet", False)
    sft_panel = panel(a / "sft_plain.panel", False, n_queries=6)
    domains = ["law", "math", "physics", "biology"]
    plain = {d: stats(a / f"{d}_plain.stats.parquet", False) for d in domains}
    icl = {d: stats(a / f"{d}_icl.stats.parquet", True) for d in domains}
    plain_panel = {d: panel(a / f"{d}_plain.panel", False) for d in domains}
    icl_panel = {d: panel(a / f"{d}_icl.panel", True) for d in domains}

    def shard(path, n_docs):
        # a shard as features.shards writes it: 3 tokens per query, random sparse features
        rows = [(dd, p) for dd in range(n_docs) for p in range(3)]
        idx = [sorted(rng.choice(width, 3, replace=False).tolist()) for _ in rows]
        write_parquet(pa.table({
            "doc_id": pa.array([r[0] for r in rows], pa.int32()),
            "pos": pa.array([r[1] for r in rows], pa.int32()),
            "token_id": pa.array([7] * len(rows), pa.int32()),
            "feat_idx": pa.array(idx, pa.list_(pa.int32())),
            "feat_val": pa.array([rng.uniform(0.1, 2, 3).tolist() for _ in rows],
                                 pa.list_(pa.float32())),
            "counted": pa.array([True] * len(rows))}), path, {"width": width})
        return path

    meta = {"model": "m", "layer": 1, "sft": "s", "seed": 0}
    spaces = ("sae", "resid", "randenc")
    unaligned = {"shard": shard(a / "sft_icl.parquet", 4), "panel": a / "s0.panel",
                 "plain_shard": shard(a / "sft_plain.parquet", 6), "plain_panel": sft_panel}
    for shift, stats_file, kind in (("s0", sft_icl, "icl"), ("true-full-s0", sft_tuned, "true")):
        names = (*spaces, "unaligned") if shift == "s0" else spaces
        reduce.shift(stats_file, panel(a / f"{shift}.panel", True),
                     {sp: root / f"shift/{shift}.{sp}.parquet" for sp in names},
                     dict(meta, kind=kind), unaligned=unaligned if shift == "s0" else None)
    parts, oracle_parts = [], []
    controls = {"control_seed": 0, "random_draws": 3, "probe_folds": 2}
    for shift, out in (("s0", parts), ("true-full-s0", oracle_parts)):
        extra = {"seed": 0} if shift == "s0" else {"method": "full", "seed": 0}
        for d in domains:
            p = root / f"sts/{shift}/{d}.parquet"
            names = (*spaces, "unaligned") if shift == "s0" else spaces
            reduce.sts({sp: root / f"shift/{shift}.{sp}.parquet" for sp in names},
                       {"stats": plain[d], "panel": plain_panel[d], "sft_panel": sft_panel,
                        **({"sft_stats": sft_plain} if shift == "s0" else {})},
                       {"stats": icl[d], "panel": icl_panel[d]}, 4,
                       {"model": "m", "layer": 1, "sft": "s", "domain": d, **extra}, p,
                       oracle=shift != "s0", settings=controls)
            out.append(p)
    t = root / "tables"
    reduce.sts_table(parts, t / "sts.parquet", t / "sts.csv")
    reduce.sts_table(oracle_parts, t / "sts_oracle.parquet", t / "sts_oracle.csv", oracle=True)
    reduce.overlap_table("m", "s", {(1, "main", 0): root / "shift/s0.sae.parquet"},
                         {("full", 0, 1, "main"): root / "shift/true-full-s0.sae.parquet"}, [2, 4],
                         t / "overlap.parquet")

    def evaluation(path, shift):
        write_parquet(pa.Table.from_pylist(
            [{"question_id": i, "metric": "acc", "value": float((i + shift) % 2)}
             for i in range(6)]), path)
        return path

    e = root / "eval"
    base = {d: evaluation(e / f"base/{d}.parquet", 0) for d in domains}
    tuned = {("full", 0, d): evaluation(e / f"full-s0/{d}.parquet", i)
             for i, d in enumerate(domains)}
    # a data-mixture run of the same method: the methods table and its allocations
    tuned.update({("full-mix_sts_rank", 0, d): evaluation(e / f"full-mix_sts_rank-s0/{d}.parquet",
                                                          i + 1) for i, d in enumerate(domains)})
    reduce.observed_table("m", "s", base, tuned, t / "observed.parquet", t / "observed.csv", 50)

    history = root / "finetune/full-s0.history.parquet"
    write_parquet(pa.table({"step": [1], "loss": [1.0]}), history,
                  {"n_records": 5, "n_examples": 5, "n_answer_cut": 1})
    mixed = root / "finetune/full-mix_sts_rank-s0.history.parquet"
    write_parquet(pa.table({"step": [1], "loss": [1.0]}), mixed, {
        "n_records": 7, "n_trainable": 9, "mixture": {
            "strategy": "sts", "allocation": "rank", "counts": {"math": 1, "physics": 2},
            "weights": {"math": 1.0, "physics": 2.0}, "n_short": 0,
            "available": {"math": 5, "physics": 5}, "values": {"math": 0.1, "physics": 0.3}}})
    # the allocation job of a mixture run that trained nothing of its own: its split (no
    # replay item) is the plain run's, so the methods table gives it the plain run's rows
    from stsflow.data import corpora
    from stsflow.jobs import mixture
    from stsflow.workflow.bundles import FinetuneFiles

    replay = {}
    for d in ("math", "physics"):
        replay[d] = root / f"replay/{d}.parquet"
        corpora.write_records([{"id": f"{d}-{i}", "question": "q", "solution": "a",
                                "finish": "eos"} for i in range(3)], replay[d])
    same = root / "mixture/full-mix_uniform-s0.json"
    mixture.allocation({"budget": 0, "domains": ["math", "physics"], "keep_cut": False},
                       "full-mix_uniform", 0, FinetuneFiles(replay=replay), same)
    reduce.coverage_table("m", "s", {("sft", "s", "plain"): sft_plain,
                                     ("sft", "s", "icl-s0"): sft_icl,
                                     **{("domain", d, "plain"): plain[d] for d in domains}},
                          {"full-s0": history}, t / "coverage.parquet", t / "coverage.csv")

    sae = root / "sae/L1"
    sae.mkdir(parents=True)
    (sae / "stsflow_sae.json").write_text(json.dumps(
        {"kind": "registry", "release": "rel", "sae_id": "layer_1", "width": width, "l0": 3.0,
         "fraction_variance_explained": 0.8, "loss_recovered": 0.9, "warnings": []}))
    rows = [{"model": "m", "sft": "s", "domain": d, "metric": "given", "delta": float(i)}
            for i, d in enumerate(domains)]
    primary = {"predictor": "sts_icl", "n_top": 4, "layer": 1, "metric": "acc",
               "protocol": "all", "target": "abs"}
    # feature cards built torch-free from the shards (the cards job adds only the lens)
    import polars as pl
    from stsflow.report.cards import build_cards

    cards = build_cards(
        {"predicted": pl.read_parquet(root / "shift/s0.sae.parquet"),
         "true-full": pl.read_parquet(root / "shift/true-full-s0.sae.parquet")},
        {("sft", "s"): unaligned["plain_shard"], ("domain", "law"): shard(a / "law.parquet", 4)},
        n_top=3, contexts=2, window=1, decode=lambda ids: " ".join(map(str, ids)),
        keys={"model": "m", "layer": 1, "sae": "main", "sft": "s", "seed": 0})
    cards_file = root / "cards/s0.parquet"
    write_parquet(cards.to_arrow(), cards_file, {"packages": {"stsflow": "x"}})
    model_dir = root / "models/m"
    model_dir.mkdir(parents=True)
    (model_dir / "stsflow_model.json").write_text(json.dumps({"kind": "local", "path": "x"}))
    provenance = report.run_provenance(model_dir=model_dir, data={"sft s": history},
                                       sae_dirs={(1, "main"): sae}, cards=[cards_file],
                                       config_sha256="0" * 64)
    report.report(t / "sts.parquet", rows, root / "reports", title="T",
                  settings=ReportSettings(n_boot=20, n_perm=20, seed=0), primary=primary,
                  provenance={"model": "m", "sft": "s", **provenance},
                  observed=t / "observed.parquet",
                  sts_oracle=t / "sts_oracle.parquet", overlap=t / "overlap.parquet",
                  coverage=t / "coverage.parquet", sae_dirs={(1, "main"): sae},
                  cards=[cards_file], target="law",
                  histories={"full-s0": history, "full-mix_sts_rank-s0": mixed},
                  allocations={"full-mix_uniform-s0": same})
    # the analysis across SFT sets: a second SFT set's table, the first one's observed Δ
    from stsflow.jobs.matrix import TABLES, matrix
    second = t / "s2" / "sts.parquet"
    write_parquet(pl.read_parquet(t / "sts.parquet").with_columns(
        sft=pl.lit("s2"), sts_icl=pl.col("sts_icl").reverse()).to_arrow(), second)
    matrix("m", {"s": t / "sts.parquet", "s2": second}, {"s": t / "observed.parquet"},
           {n: t / "matrix" / f"{n}.parquet" for n in TABLES}, root / "reports/matrix",
           primary={"predictor": "sts_icl", "normalisation": "zscore", "metric": "acc",
                    "target": "abs", "layer": 1, "sae": None, "n_top": 4, "seed": 0},
           sfts=["s", "s2"], domains=domains, targets={"s": "law", "s2": None},
           n_boot=20, n_perm=20)
    manifest = write_manifest(root, {"results": str(root)})

    print(json.dumps({
        "attempts": ATTEMPTS,
        "loaded": sorted(m for m in sys.modules if m.partition(".")[0] in HEAVY),
        "reports": sorted(p.name for p in (root / "reports").iterdir()),
        "manifest_files": len(manifest["files"]),
        "matrix": {n: pl.read_parquet(t / "matrix" / f"{n}.parquet").height for n in TABLES},
        "matrix_page": sorted(p.name for p in (root / "reports/matrix").iterdir()),
        "provenance": sorted(provenance),
        "card_rows": (root / "reports/summary.html").read_text().count(
            '<tr class="card"><td>predicted</td>'),
        "mixture": [line for line in (root / "reports/summary.md").read_text().splitlines()
                    if line.startswith(("| full-mix_sts_rank |", "- gain kept n/a",
                                        "| full-mix_uniform"))],
    }))
""")


def rules_in_env(env: str) -> dict[str, str]:
    """rule name -> script, for every rule whose conda environment is ``env`` (as Snakemake
    parsed the workflow: rules derived with ``use rule ... with:`` inherit their parent's
    environment and script)."""
    return {name: r.script for name, r in workflow_rules(ALL_RULES).items()
            if r.env == f"../envs/{env}.yaml"}


def script_imports(script: str) -> set[str]:
    tree = ast.parse((REPO / "rules" / script).resolve().read_text())
    mods = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            mods |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            mods.add(node.module)
            # `from stsflow.jobs import reduce`: the names may be submodules
            mods |= {f"{node.module}.{a.name}" for a in node.names
                     if (REPO / node.module.replace(".", "/") / f"{a.name}.py").exists()}
    return mods


def test_reduction_rules_use_the_reduce_env():
    rules = rules_in_env("reduce")
    assert set(rules) == {"shift", "true_shift", "sts", "sts_table", "oracle_table", "overlap",
                          "coverage", "observed", "report", "matrix", "manifest",
                          "allocation"}


def test_reductions_and_report_run_without_torch(tmp_path):
    modules = {"stsflow.jobs.reduce", "stsflow.jobs.report", "stsflow.jobs.mixture",
               "stsflow.io.manifest"}
    for script in rules_in_env("reduce").values():
        modules |= script_imports(script)
    assert not {m.partition(".")[0] for m in modules} & set(HEAVY)
    env = dict(os.environ, PYTHONPATH=str(REPO), MPLBACKEND="Agg")
    args = [",".join(HEAVY), ",".join(sorted(modules)), str(REPO)]
    proc = subprocess.run([sys.executable, "-c", BLOCKER + RUN, *args], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=600, check=False)
    assert proc.returncode == 0, proc.stderr[-4000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["attempts"] == [], f"stsflow imported heavy packages: {result['attempts']}"
    assert result["loaded"] == []
    assert "summary.html" in result["reports"] and "correlations.parquet" in result["reports"]
    assert "comparison.parquet" in result["reports"] and "forest.png" in result["reports"]
    assert result["manifest_files"] > 10
    assert result["provenance"] == sorted(
        ["model identity", "SAE L1/main", "data sft s", "versions (report)",
         "versions (model jobs)", "config sha256"])
    assert result["card_rows"] == 3
    # the matrix job, torch-free too: 2 SFT sets x 4 domains for each of the 2 runs of "s"
    assert result["matrix"]["decision"] == 2 * 2 * 4 and result["matrix"]["observed"] == 2 * 4
    assert result["matrix_page"] == ["matrix_heatmaps.png", "summary.html", "summary.md"]
    # the methods table with its gain kept and the mixture's allocation, both without torch
    assert "methods.parquet" in result["reports"] and "allocations.parquet" in result["reports"]
    mixture = result["mixture"]
    assert any("n/a (1)" in line for line in mixture)  # in the methods table
    assert any("| rank | 1 (0.1) | 2 (0.3) | 0 |" in line for line in mixture)
    assert any(line.startswith("- gain kept n/a (1): ") for line in mixture)
    # a run whose split has no replay item: the plain run's data, its rows (and the report
    # says so), and an allocation row of zeros that says it too
    assert any(line.startswith("| full-mix_uniform (= full) |") for line in mixture), mixture
    assert any(line.startswith("| full-mix_uniform | 0 | uniform | 0 | 0 |")
               and "the same training data as full" in line for line in mixture)
