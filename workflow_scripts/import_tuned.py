"""Rule import_tuned: a post-hoc pair's tuned model imported as the checkpoint of its run."""
from stsflow.jobs import validate
from stsflow.jobs.common import setup_logging

setup_logging(snakemake.log[0])
w = snakemake.wildcards
validate.import_posthoc(snakemake.input.model, snakemake.params.label, snakemake.params.tuned,
                        w.method, int(w.seed), snakemake.output.ckpt, snakemake.output.history)
