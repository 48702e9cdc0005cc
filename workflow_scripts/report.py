"""Rule report: correlation of STS with observed accuracy changes, with plots and summaries."""
from pathlib import Path

from stsflow.config.settings import ReportSettings
from stsflow.jobs import report
from stsflow.jobs.common import setup_logging
from stsflow.workflow.bundles import ReportFiles

setup_logging(snakemake.log[0])
w = snakemake.wildcards
files = ReportFiles.read(snakemake.input)
rows = [{"model": w.model, "sft": w.sft, "domain": d, "metric": o["metric"], "delta": float(v)}
        for o in snakemake.params.observed for d, v in o["deltas"].items()]
sources = [o.get("source") or o["metric"] for o in snakemake.params.observed]
if "observed" in files.tables:
    sources.append("evaluation by this workflow of its tuned models (fine-tuned here or "
                   "imported as post-hoc pairs)")
provenance = {"model": w.model, "sft": w.sft, "observed": "; ".join(sources),
              **report.run_provenance(model_dir=files.model, data=files.data,
                                      sae_dirs=files.sae_dirs, cards=files.cards,
                                      config_sha256=snakemake.params.config_sha256)}
report.report(files.sts, rows, Path(snakemake.output.html).parent,
              title=f"STS vs observed change: {w.model} fine-tuned on {w.sft}",
              settings=ReportSettings.from_config(snakemake.params.report),
              primary=dict(snakemake.params.primary), provenance=provenance,
              sae_dirs=files.sae_dirs, cards=files.cards, histories=files.histories,
              target=snakemake.params.target,
              # every declared scatter plot, also of a predictor without rows here
              scatter_for=[Path(f).stem.removeprefix("scatter_") for f in snakemake.output.plots],
              coverage=files.coverage, allocations=files.allocations, **files.tables)
