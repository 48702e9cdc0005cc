"""Rule coverage: queries used and truncated per corpus, answers cut per fine-tuning run."""
from stsflow.jobs import reduce
from stsflow.jobs.common import setup_logging
from stsflow.workflow.bundles import CoverageFiles

setup_logging(snakemake.log[0])
w = snakemake.wildcards
files = CoverageFiles.read(snakemake.input)
reduce.coverage_table(w.model, w.sft, files.extractions, files.finetunes,
                      snakemake.output.parquet, snakemake.output.csv)
