"""Rule finetune: fine-tune the base model on one SFT set (one method, one seed)."""
from stsflow import pipeline

pipeline.setup_logging(snakemake.log[0])
w = snakemake.wildcards
pipeline.finetune(snakemake.input.model, snakemake.params.model, snakemake.input.sft_items,
                  snakemake.params.recipe, w.method, int(w.seed), snakemake.output.ckpt,
                  snakemake.output.history, threads=snakemake.threads)
