"""Rule sts: every registered predictor of one domain for one shift vector and N."""
from stsflow.jobs import reduce
from stsflow.jobs.common import setup_logging
from stsflow.mode import Shift

setup_logging(snakemake.log[0])
w = snakemake.wildcards
i = snakemake.input
shift = Shift.parse(w.shift)  # predicted (s<seed>) or true (true-<method>-s<seed>: oracle rows)
key = {"model": w.model, "layer": int(w.layer), "sae": w.sae, "sft": w.sft, "domain": w.domain,
       **shift.key()}
plain = {"stats": i.plain, "panel": i.plain_panel, "sft_panel": i.sft_panel,
         "sft_grad": i.sft_grad, "domain_grad": i.domain_grad}
plain.update({k: i[k] for k in ("reps_base", "reps_tuned") if k in i.keys()})  # true shifts
reduce.sts({k[len("shift_"):]: i[k] for k in i.keys() if k.startswith("shift_")}, plain,
           {"stats": i.icl, "panel": i.icl_panel}, int(w.n), key, snakemake.output[0],
           oracle=shift.true, settings=snakemake.params.controls)
