"""Rule manifest: hash every result and record what produced it."""
from stsflow.io.manifest import write_manifest
from stsflow.jobs.common import setup_logging

setup_logging(snakemake.log[0])
write_manifest(snakemake.config.get("results", "results"), snakemake.params.config,
               snakemake.output[0])
