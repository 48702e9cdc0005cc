"""Rule replay: the base model's greedy answers to one domain's pool items (data mixture)."""
from stsflow.config.settings import ModelSettings
from stsflow.jobs import validate
from stsflow.jobs.common import hub_offline, setup_logging

setup_logging(snakemake.log[0])
hub_offline()  # what it loads was fetched by fetch_model
validate.replay(snakemake.input.model, ModelSettings.from_config(snakemake.params.model),
                snakemake.input.pool, snakemake.output[0],
                max_new_tokens=snakemake.params.generation["max_new_tokens"],
                batch_size=snakemake.params.generation["batch_size"], threads=snakemake.threads)
