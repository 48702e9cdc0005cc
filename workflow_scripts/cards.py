"""Rule cards: feature cards of one seed's top shifted dimensions, predicted and true."""
from pathlib import Path

from stsflow.config.settings import CardSettings, ModelSettings
from stsflow.jobs.cards import cards
from stsflow.jobs.common import hub_offline, setup_logging
from stsflow.workflow.bundles import CardFiles

setup_logging(snakemake.log[0])
hub_offline()  # what it loads was fetched by fetch_model / fetch_sae

w = snakemake.wildcards
files = CardFiles.read(snakemake.input, w.sft)
cards({Path(p).name[:-len(".parquet")]: p for p in files.shifts}, files.shards, files.sae,
      files.model, snakemake.output[0], settings=CardSettings.from_config(snakemake.params.cards),
      model=ModelSettings.from_config(snakemake.params.model),
      keys={"model": w.model, "layer": int(w.layer), "sae": w.sae, "sft": w.sft,
            "seed": int(w.seed)},
      threads=snakemake.threads)
