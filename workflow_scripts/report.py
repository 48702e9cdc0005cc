"""Rule report: correlation of STS with observed accuracy changes, with plots and summaries."""
from pathlib import Path

from stsflow.config.settings import ReportSettings
from stsflow.jobs import report
from stsflow.jobs.common import setup_logging

setup_logging(snakemake.log[0])
w = snakemake.wildcards
rows = [{"model": w.model, "sft": w.sft, "domain": d, "metric": o["metric"], "delta": float(v)}
        for o in snakemake.params.observed for d, v in o["deltas"].items()]
optional = {k: snakemake.input[k] for k in ("observed", "sts_oracle", "overlap", "coverage")
            if k in snakemake.input.keys()}
sources = [o.get("source") or o["metric"] for o in snakemake.params.observed]
if "observed" in optional:
    sources.append("evaluation by this workflow of its tuned models (fine-tuned here or "
                   "imported as post-hoc pairs)")
sae_dirs = {}  # (layer, SAE name) -> prepared SAE, from the named inputs "sae_L<layer>/<name>"
for k in snakemake.input.keys():
    if k.startswith("sae_L"):
        layer, name = k[len("sae_L"):].split("/", 1)
        sae_dirs[(int(layer), name)] = snakemake.input[k]
histories = {k[len("history/"):]: snakemake.input[k] for k in snakemake.input.keys()
             if k.startswith("history/")}
data = {k[len("data/"):]: snakemake.input[k] for k in snakemake.input.keys()
        if k.startswith("data/")}
provenance = {"model": w.model, "sft": w.sft, "observed": "; ".join(sources),
              **report.run_provenance(model_dir=snakemake.input.model, data=data,
                                      sae_dirs=sae_dirs, cards=list(snakemake.input.cards),
                                      config_sha256=snakemake.params.config_sha256)}
report.report(snakemake.input.sts, rows, Path(snakemake.output.html).parent,
              title=f"STS vs observed change: {w.model} fine-tuned on {w.sft}",
              settings=ReportSettings.from_config(snakemake.params.report),
              primary=dict(snakemake.params.primary), provenance=provenance,
              sae_dirs=sae_dirs, cards=list(snakemake.input.cards), histories=histories,
              target=snakemake.params.target,
              # every declared scatter plot, also of a predictor without rows here
              scatter_for=[Path(f).stem.removeprefix("scatter_") for f in snakemake.output.plots],
              **optional)
