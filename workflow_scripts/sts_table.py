"""Rules sts_table / oracle_table: all STS rows of one (model, SFT set) as Parquet and CSV."""
from stsflow import pipeline

pipeline.setup_logging(snakemake.log[0])
pipeline.sts_table(list(snakemake.input), snakemake.output.parquet, snakemake.output.csv,
                   oracle=snakemake.rule == "oracle_table")
