"""Rule observed: the observed accuracy change of every domain after fine-tuning."""
from stsflow import pipeline

pipeline.setup_logging(snakemake.log[0])
p = snakemake.params
base = dict(zip(p.domains, snakemake.input.base))
keys = [(m, s, d) for m, s in p.runs for d in p.domains]
pipeline.observed_table(snakemake.wildcards.model, snakemake.wildcards.sft, base,
                        dict(zip(keys, snakemake.input.tuned)), snakemake.output.parquet,
                        snakemake.output.csv, p.n_boot)
