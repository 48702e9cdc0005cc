"""Rule prepare_model: a loadable model directory (GGUF packages are converted once)."""
from stsflow import pipeline

pipeline.setup_logging(snakemake.log[0])
pipeline.prepare_model(snakemake.params.spec, snakemake.output[0])
