"""Rules sts_table / oracle_table: all STS rows of one (model, SFT set) as Parquet and CSV."""
from stsflow.jobs import reduce
from stsflow.jobs.common import setup_logging

setup_logging(snakemake.log[0])
reduce.sts_table(list(snakemake.input), snakemake.output.parquet, snakemake.output.csv,
                 oracle=snakemake.rule == "oracle_table")
