"""Rules materialize_sft / materialize_domain: a corpus as normalised Parquet records."""
from stsflow import pipeline

pipeline.setup_logging(snakemake.log[0])
if snakemake.rule == "materialize_sft":
    pipeline.materialize_sft(snakemake.params.spec, snakemake.output[0])
else:
    pipeline.materialize_domain(snakemake.params.spec, snakemake.output.test, snakemake.output.demos)
