"""Rule overlap: overlap of predicted and true top-N shifted dimensions."""
from stsflow import pipeline

pipeline.setup_logging(snakemake.log[0])
p = snakemake.params
predicted = dict(zip([(layer, seed) for layer in p.layers for seed in p.seeds],
                     snakemake.input.predicted))
true = dict(zip([(m, seed, layer) for m, seed in p.runs for layer in p.layers], snakemake.input.true))
pipeline.overlap_table(snakemake.wildcards.model, snakemake.wildcards.sft, predicted, true,
                       p.n_top, snakemake.output[0])
