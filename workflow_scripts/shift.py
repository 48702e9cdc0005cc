"""Rules shift / true_shift: E over aligned SFT query tokens of the squared feature change, for
every feature space."""
from stsflow.jobs import reduce
from stsflow.jobs.common import setup_logging

setup_logging(snakemake.log[0])
w = snakemake.wildcards
meta = {"model": w.model, "layer": int(w.layer), "sae": w.sae, "sft": w.sft, "seed": int(w.seed),
        "kind": "true" if snakemake.rule == "true_shift" else "icl"}
if snakemake.rule == "true_shift":
    meta["method"] = w.method
i = snakemake.input
unaligned = None
if "shard" in i.keys():  # predicted shift: the authors' unaligned shift too
    unaligned = {"shard": i.shard, "panel": i.panel, "plain_shard": i.plain_shard,
                 "plain_panel": i.plain_panel}
reduce.shift(i.stats, i.panel, {k: snakemake.output[k] for k in snakemake.output.keys()}, meta,
             unaligned=unaligned, unaligned_rows=snakemake.params.unaligned_rows)
