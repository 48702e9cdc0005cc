"""A new predictor, metric and fine-tuning method is one module plus one registration: a plugin
package (stsflow.plugins) whose single module registers a toy of each, installed only as an
entry point, runs through the whole workflow with nothing else changed — the rules' wildcards,
inputs, parameters and costs, every job function, the tables and the report."""

from __future__ import annotations

import os
import textwrap

import polars as pl
import pytest

from conftest import REPO
from workflow_helpers import planned_jobs, snakemake, tiny_config, write_config

PLUGIN = textwrap.dedent('''
    """A toy stsflow plugin: one predictor, one metric, one fine-tuning method."""
    import numpy as np

    from stsflow.evaluate.registry import MetricCost, register_metric
    from stsflow.finetune.registry import register_method
    from stsflow.scores.registry import register_predictor


    @register_predictor("toy_peak", family="toy", oracle=True, about="largest mean feature of D_N")
    def toy_peak(x):
        dims = x.dims("sae")
        if not len(dims):  # nothing moved (a true shift of a method that left the layer alone)
            return float("nan")
        stats = x.plain["sae"]
        return float(np.max(stats.sum[dims]) / max(stats.n_tokens, 1))


    @register_metric("toy_first", kind="accuracy", higher_is_better=True,
                     cost=lambda ev: MetricCost())
    def toy_first(model, tokenizer, items, demos, **kw):
        """Correct where the reference answer is the first option (no model call)."""
        return [{"question_id": it["question_id"], "correct": it["answer_index"] == 0}
                for it in items]


    def _norm_only(model, cfg, context):
        for name, p in model.named_parameters():
            p.requires_grad_(name.endswith("model.norm.weight"))
        return model


    register_method("toy_norm", _norm_only, lambda trained: trained, plan_as="adapter",
                    about="the final norm's gains only")
''')


def install_plugin(where) -> str:
    """The toy plugin as an installed distribution would leave it: its module and a dist-info
    naming it in the stsflow.plugins entry-point group. Returns the directory to put on the
    import path."""
    (where / "toy_stsflow_plugin.py").write_text(PLUGIN)
    info = where / "toy_stsflow_plugin-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: toy-stsflow-plugin\n"
                                   "Version: 0.1\n")
    (info / "entry_points.txt").write_text("[stsflow.plugins]\ntoy = toy_stsflow_plugin\n")
    return str(where)


@pytest.mark.slow
def test_a_plugin_predictor_metric_and_method_run_through_the_workflow(tiny_model_dir, tmp_path):
    (tmp_path / "site").mkdir()
    env = {"PYTHONPATH": os.pathsep.join([install_plugin(tmp_path / "site"), str(REPO),
                                          os.environ.get("PYTHONPATH", "")])}
    cfg = tiny_config(tmp_path, tiny_model_dir, observed=False, finetune=True)
    cfg["finetune"]["methods"] = ["toy_norm"]
    cfg["evaluate"]["metrics"] = ["nll", "toy_first"]
    write_config(tmp_path, cfg)

    # without the plugin the names are refused, each with the field and the registered names
    out = snakemake(tmp_path, "-n", check=False)
    assert out.returncode != 0
    text = out.stdout + out.stderr
    assert "finetune.methods[0]: unknown method 'toy_norm'" in text
    assert "evaluate.metrics[1]: unknown metric 'toy_first'" in text

    planned = planned_jobs(tmp_path, env=env)
    assert planned["finetune"] == 1 and planned["evaluate_tuned"] == 3

    snakemake(tmp_path, "--cores", "2", env=env)
    tables = tmp_path / "results/tables/tiny/arith"
    sts = pl.read_parquet(tables / "sts.parquet")
    assert "toy_peak" in sts.columns and sts["toy_peak"].is_finite().all()
    oracle = pl.read_parquet(tables / "sts_oracle.parquet")
    assert set(oracle["method"]) == {"toy_norm"} and "toy_peak_oracle" in oracle.columns
    observed = pl.read_parquet(tables / "observed.parquet")
    assert set(observed["metric"]) == {"nll", "toy_first"}
    assert set(observed["method"]) == {"toy_norm"}
    # the toy metric calls no model: before and after agree exactly
    toy = observed.filter(pl.col("metric") == "toy_first")
    assert (toy["delta"] == 0).all()
    corr = pl.read_parquet(tmp_path / "results/reports/tiny/arith/correlations.parquet")
    assert {"toy_peak", "toy_peak_oracle"} <= set(corr["predictor"])
    from stsflow.io.files import read_metadata

    meta = read_metadata(tmp_path / "results/finetune/tiny/arith/toy_norm-s0.history.parquet")
    assert meta["method"] == "toy_norm" and meta["n_trainable"] == 32  # the norm's gains
