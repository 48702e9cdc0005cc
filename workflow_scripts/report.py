"""Rule report: correlation of STS with observed accuracy changes, with plots and summaries."""
from pathlib import Path

from stsflow import pipeline

pipeline.setup_logging(snakemake.log[0])
w = snakemake.wildcards
rows = [{"model": w.model, "sft": w.sft, "domain": d, "metric": o["metric"], "delta": float(v)}
        for o in snakemake.params.observed for d, v in o["deltas"].items()]
observed_tables = [snakemake.input[k] for k in ("observed",) if k in snakemake.input.keys()]
pipeline.report(snakemake.input.sts, rows, observed_tables, Path(snakemake.output.html).parent,
                title=f"STS vs observed change: {w.model} fine-tuned on {w.sft}",
                report_cfg=snakemake.params.report,
                provenance={"model": w.model, "sft": w.sft,
                            "observed sources": "; ".join(o.get("source") or o["metric"]
                                                          for o in snakemake.params.observed)})
