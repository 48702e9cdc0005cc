"""Rule finetune: fine-tune the base model on one SFT set (one method, one seed)."""
from stsflow.config.settings import CheckpointSettings, FinetuneSettings, ModelSettings
from stsflow.jobs import validate
from stsflow.jobs.common import hub_offline, setup_logging

setup_logging(snakemake.log[0])
hub_offline()  # what it loads was fetched by fetch_model / fetch_sae
w = snakemake.wildcards
validate.finetune(snakemake.input.model, ModelSettings.from_config(snakemake.params.model),
                  snakemake.input.sft_items,
                  FinetuneSettings.from_recipe(snakemake.params.recipe, w.method, int(w.seed)),
                  snakemake.output.ckpt,
                  snakemake.output.history, threads=snakemake.threads,
                  inputs=dict(snakemake.input.items()), log_path=snakemake.log[0],
                  # read from the config, not passed as parameters: checkpointing does not change
                  # the trained weights, so editing it must not rerun finished runs
                  checkpoints=CheckpointSettings.from_config(snakemake.config))
