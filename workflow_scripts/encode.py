"""Rule encode: a sweep SAE's shard, statistics and panel from the residuals its layer kept."""
from stsflow.config.settings import ExtractSettings
from stsflow.jobs import extract
from stsflow.jobs.common import hub_offline, setup_logging

setup_logging(snakemake.log[0])
hub_offline()  # what it loads was fetched by fetch_model / fetch_sae
w = snakemake.wildcards
named = snakemake.input.keys()
extract.encode_sweep(
    snakemake.input.residuals, snakemake.input.sae, w.mode,
    ExtractSettings.from_params(w.kind, snakemake.params.sts), snakemake.output.shard,
    snakemake.output.stats, snakemake.output.panel,
    reference=snakemake.input.reference if "reference" in named else None,
    panel_reference=snakemake.input.panel_ref if "panel_ref" in named else None,
    device=snakemake.params.device, batch_size=snakemake.params.batch_size,
    threads=snakemake.threads)
