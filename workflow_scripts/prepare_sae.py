"""Rule prepare_sae: fetch, link or train the SAE of one (model, layer)."""
from stsflow import pipeline

pipeline.setup_logging(snakemake.log[0])
files = dict(zip([n for _, n in snakemake.params.corpora], snakemake.input.corpora))
pipeline.prepare_sae(snakemake.input.model, snakemake.params.model, int(snakemake.wildcards.layer),
                     snakemake.params.sae,
                     [(kind, files[name]) for kind, name in snakemake.params.corpora],
                     snakemake.output[0], threads=snakemake.threads)
