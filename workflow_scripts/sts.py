"""Rule sts: STS_act, STS_icl, STS_sq of one domain for one shift vector and N."""
from stsflow import pipeline

pipeline.setup_logging(snakemake.log[0])
w = snakemake.wildcards
key = {"model": w.model, "layer": int(w.layer), "sft": w.sft, "domain": w.domain}
if w.shift.startswith("true-"):  # oracle: dimensions that fine-tuning really moved
    _, method, seed = w.shift.split("-")
    key.update(method=method, seed=int(seed[1:]))
else:
    key["seed"] = int(w.shift[1:])
pipeline.sts(snakemake.input.shift, snakemake.input.plain, snakemake.input.icl, int(w.n), key,
             snakemake.output[0])
