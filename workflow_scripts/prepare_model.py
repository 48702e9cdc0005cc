"""Rule prepare_model: a loadable model directory (GGUF packages are converted once)."""
from stsflow.jobs import prepare
from stsflow.jobs.common import setup_logging

setup_logging(snakemake.log[0])
prepare.prepare_model(snakemake.params.spec, snakemake.output[0])
