"""Rules materialize_sft / materialize_domain: a corpus as normalised Parquet records."""
from stsflow.jobs import prepare
from stsflow.jobs.common import setup_logging

setup_logging(snakemake.log[0])
if snakemake.rule == "materialize_sft":
    prepare.materialize_sft(snakemake.params.spec, snakemake.output[0])
else:
    prepare.materialize_domain(snakemake.params.spec, snakemake.output.test, snakemake.output.demos)
