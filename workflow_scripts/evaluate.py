"""Rules evaluate_base / evaluate_tuned: one model variant on one domain, per-item results and
the mean residual of its queries at every layer."""
from stsflow.config.settings import EvalSettings, ModelSettings
from stsflow.jobs import validate
from stsflow.jobs.common import hub_offline, setup_logging

setup_logging(snakemake.log[0])
hub_offline()  # what it loads was fetched by fetch_model / fetch_sae
w = snakemake.wildcards
variant = {"model": w.model, "domain": w.domain}
if snakemake.rule == "evaluate_tuned":
    variant.update(sft=w.sft, method=w.method, seed=int(w.seed))
validate.evaluate(snakemake.input.model, ModelSettings.from_config(snakemake.params.model),
                  snakemake.input.test, snakemake.input.demos,
                  EvalSettings.from_config(snakemake.params.evaluate), variant,
                  snakemake.output.scores, subject=snakemake.params.subject,
                  threads=snakemake.threads, reps_out=snakemake.output.reps)
