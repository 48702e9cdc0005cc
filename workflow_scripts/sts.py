"""Rule sts: STS_act, STS_icl, STS_sq of one domain for one shift vector and N."""
from stsflow import pipeline
from stsflow.mode import Shift

pipeline.setup_logging(snakemake.log[0])
w = snakemake.wildcards
shift = Shift.parse(w.shift)  # predicted (s<seed>) or true (true-<method>-s<seed>: oracle rows)
key = {"model": w.model, "layer": int(w.layer), "sft": w.sft, "domain": w.domain, **shift.key()}
pipeline.sts(snakemake.input.shift, snakemake.input.plain, snakemake.input.icl, int(w.n), key,
             snakemake.output[0])
