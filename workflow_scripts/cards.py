"""Rule cards: feature cards of one seed's top shifted dimensions, predicted and true."""
from pathlib import Path

from stsflow.config.settings import CardSettings, ModelSettings
from stsflow.jobs.cards import cards
from stsflow.jobs.common import hub_offline, setup_logging

setup_logging(snakemake.log[0])
hub_offline()  # what it loads was fetched by fetch_model / fetch_sae

w = snakemake.wildcards
inp = snakemake.input
shards = {("sft", w.sft): inp.sft_shard}
shards.update({("domain", k.split("/", 1)[1]): inp[k] for k in inp.keys()
               if k.startswith("domain/")})
cards({Path(p).name[:-len(".parquet")]: p for p in inp.shifts}, shards, inp.sae, inp.model,
      snakemake.output[0], settings=CardSettings.from_config(snakemake.params.cards),
      model=ModelSettings.from_config(snakemake.params.model),
      keys={"model": w.model, "layer": int(w.layer), "sae": w.sae, "sft": w.sft,
            "seed": int(w.seed)},
      threads=snakemake.threads)
