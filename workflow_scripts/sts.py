"""Rule sts: STS_act, STS_icl, STS_sq of one domain for one shift vector and N."""
from stsflow.jobs import reduce
from stsflow.jobs.common import setup_logging
from stsflow.mode import Shift

setup_logging(snakemake.log[0])
w = snakemake.wildcards
shift = Shift.parse(w.shift)  # predicted (s<seed>) or true (true-<method>-s<seed>: oracle rows)
key = {"model": w.model, "layer": int(w.layer), "sft": w.sft, "domain": w.domain, **shift.key()}
reduce.sts(snakemake.input.shift, snakemake.input.plain, snakemake.input.icl, int(w.n), key,
           snakemake.output[0])
