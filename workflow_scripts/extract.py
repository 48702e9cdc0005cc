"""Rule extract: the layer's own SAE on one (model, layer, corpus, mode): shard, statistics,
panel and the residuals kept for the sweep."""
from stsflow.config.settings import ExtractSettings, ModelSettings
from stsflow.jobs import extract
from stsflow.jobs.common import hub_offline, setup_logging

setup_logging(snakemake.log[0])
hub_offline()  # what it loads was fetched by fetch_model / fetch_sae
w = snakemake.wildcards
data = {k: snakemake.input[k] for k in ("sft_items", "test", "demos") if k in snakemake.input.keys()}
reference = snakemake.input.reference if "reference" in snakemake.input.keys() else None
panel_ref = snakemake.input.panel_ref if "panel_ref" in snakemake.input.keys() else None
extract.extract(snakemake.input.model, snakemake.input.sae,
                ModelSettings.from_config(snakemake.params.model), int(w.layer), w.mode,
                data, ExtractSettings.from_params(w.kind, snakemake.params.sts),
                snakemake.output.shard,
                snakemake.output.stats, reference=reference, panel_out=snakemake.output.panel,
                resid_out=snakemake.output.residuals,
                panel_reference=panel_ref,
                provenance={"corpus": w.corpus}, threads=snakemake.threads, corpus=w.corpus,
                model_name=w.model)
