"""Rule matrix: the transfer matrix across one model's SFT sets, its tables and page."""
from pathlib import Path

from stsflow.jobs.common import setup_logging
from stsflow.jobs.matrix import TABLES, matrix
from stsflow.workflow.bundles import MatrixFiles

setup_logging(snakemake.log[0])
files = MatrixFiles.read(snakemake.input)
matrix(snakemake.wildcards.model, files.sts, files.observed,
       {name: snakemake.output[name] for name in TABLES}, Path(snakemake.output.html).parent,
       config_rows=list(snakemake.params.given), **dict(snakemake.params.matrix))
