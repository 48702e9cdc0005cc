"""Rule sts: every registered predictor of one domain for one shift vector and N."""
from stsflow.jobs import reduce
from stsflow.jobs.common import setup_logging
from stsflow.mode import Shift
from stsflow.workflow.bundles import ScoreFiles

setup_logging(snakemake.log[0])
w = snakemake.wildcards
shift = Shift.parse(w.shift)  # predicted (s<seed>) or true (true-<method>-s<seed>: oracle rows)
key = {"model": w.model, "layer": int(w.layer), "sae": w.sae, "sft": w.sft, "domain": w.domain,
       **shift.key()}
files = ScoreFiles.read(snakemake.input)
reduce.sts(files.shifts, files.plain, files.icl, int(w.n), key, snakemake.output[0],
           oracle=shift.true, settings=snakemake.params.controls)
