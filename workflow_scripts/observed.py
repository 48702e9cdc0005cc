"""Rule observed: the observed accuracy change of every domain after fine-tuning."""
from stsflow.io.files import read_metadata
from stsflow.jobs import reduce
from stsflow.jobs.common import setup_logging

setup_logging(snakemake.log[0])
# each evaluation file names its variant in its metadata: nothing depends on the input order
base = {read_metadata(p)["variant"]["domain"]: p for p in snakemake.input.base}
tuned = {}
for path in snakemake.input.tuned:
    v = read_metadata(path)["variant"]
    tuned[(v["method"], v["seed"], v["domain"])] = path
reduce.observed_table(snakemake.wildcards.model, snakemake.wildcards.sft, base, tuned,
                      snakemake.output.parquet, snakemake.output.csv, snakemake.params.n_boot)
