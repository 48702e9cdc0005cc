"""Rule overlap: overlap of predicted and true top-N shifted dimensions."""
from stsflow.io.files import read_metadata
from stsflow.jobs import reduce
from stsflow.jobs.common import setup_logging

setup_logging(snakemake.log[0])
# each shift file names its own run in its metadata: nothing depends on the order of the inputs
predicted, true = {}, {}
for path in snakemake.input.predicted:
    m = read_metadata(path)
    predicted[(m["layer"], m["sae"], m["seed"])] = path
for path in snakemake.input.true:
    m = read_metadata(path)
    true[(m["method"], m["seed"], m["layer"], m["sae"])] = path
reduce.overlap_table(snakemake.wildcards.model, snakemake.wildcards.sft, predicted, true,
                     snakemake.params.n_top, snakemake.output[0])
