"""Rule gradients: the projected mean low-rank gradient of one corpus on the base model."""
from stsflow.config.settings import ModelSettings
from stsflow.jobs import extract
from stsflow.jobs.common import hub_offline, setup_logging

setup_logging(snakemake.log[0])
hub_offline()  # what it loads was fetched by fetch_model / fetch_sae
w = snakemake.wildcards
extract.gradients(snakemake.input.model, ModelSettings.from_config(snakemake.params.model), w.kind,
                  snakemake.input.data, dict(snakemake.params.grads),
                  list(snakemake.params.targets), snakemake.output[0], threads=snakemake.threads)
