"""Rules shift / true_shift: E over aligned SFT query tokens of the squared feature change, for
every feature space."""
from stsflow.jobs import reduce
from stsflow.jobs.common import setup_logging
from stsflow.scores import SPACES

setup_logging(snakemake.log[0])
w = snakemake.wildcards
meta = {"model": w.model, "layer": int(w.layer), "sft": w.sft, "seed": int(w.seed),
        "kind": "true" if snakemake.rule == "true_shift" else "icl"}
if snakemake.rule == "true_shift":
    meta["method"] = w.method
reduce.shift(snakemake.input.stats, snakemake.input.panel,
             {space: snakemake.output[space] for space in SPACES}, meta)
