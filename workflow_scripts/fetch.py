"""Rules fetch_model and fetch_sae: download a model or an SAE from the hub into its cache."""
from stsflow.jobs import prepare
from stsflow.jobs.common import setup_logging

setup_logging(snakemake.log[0])
prepare.fetch(snakemake.params.get("source"), snakemake.params.get("sae"), snakemake.output[0])
