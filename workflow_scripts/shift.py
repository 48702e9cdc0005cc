"""Rule shift: shift vector of an SFT set (E over aligned query tokens of the squared ICL change)."""
from stsflow import pipeline

pipeline.setup_logging(snakemake.log[0])
w = snakemake.wildcards
pipeline.shift(snakemake.input.stats, snakemake.output[0],
               {"model": w.model, "layer": int(w.layer), "sft": w.sft, "seed": int(w.seed)})
