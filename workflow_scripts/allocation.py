"""Rule allocation: a data-mixture run's split of its replay budget, before fine-tuning."""
from stsflow.jobs import mixture
from stsflow.jobs.common import setup_logging
from stsflow.workflow.bundles import FinetuneFiles

setup_logging(snakemake.log[0])
w = snakemake.wildcards
mixture.allocation(snakemake.params.mixture, w.method, int(w.seed),
                   FinetuneFiles.read(snakemake.input), snakemake.output[0])
