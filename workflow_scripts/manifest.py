"""Rule manifest: hash every result and record what produced it."""
from stsflow import pipeline
from stsflow.manifest import write_manifest

pipeline.setup_logging(snakemake.log[0])
write_manifest(snakemake.config.get("results", "results"), snakemake.params.config,
               snakemake.output[0])
