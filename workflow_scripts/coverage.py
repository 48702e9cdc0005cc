"""Rule coverage: queries used and truncated per corpus, answers cut per fine-tuning run."""
from stsflow.jobs import reduce
from stsflow.jobs.common import setup_logging

setup_logging(snakemake.log[0])
w = snakemake.wildcards
extractions, finetunes = {}, {}
for name in snakemake.input.keys():  # named inputs: "sft:<corpus>", "domain:<corpus>", "ft:<run>"
    kind, _, item = name.partition(":")
    if kind == "ft":
        finetunes[item] = snakemake.input[name]
    else:
        extractions[(kind, item)] = snakemake.input[name]
reduce.coverage_table(w.model, w.sft, extractions, finetunes, snakemake.output.parquet,
                      snakemake.output.csv)
