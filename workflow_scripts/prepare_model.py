"""Rule prepare_model: a loadable model directory (GGUF packages are converted once)."""
from stsflow.config.settings import ModelSettings
from stsflow.jobs import prepare
from stsflow.jobs.common import setup_logging

setup_logging(snakemake.log[0])
prepare.prepare_model(ModelSettings.from_config(snakemake.params.spec), snakemake.output[0],
                      fetched=snakemake.input.get("hub"))
