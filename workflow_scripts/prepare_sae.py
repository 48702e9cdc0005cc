"""Rule prepare_sae: fetch, check or train the SAE of one (model, layer); its quality figures."""
from stsflow.config.checks import n_top_of
from stsflow.jobs import prepare
from stsflow.jobs.common import setup_logging

setup_logging(snakemake.log[0])
layer = int(snakemake.wildcards.layer)
files = dict(zip([n for _, n in snakemake.params.corpora], snakemake.input.corpora))
# sts.n_top is read from the config, not passed as a parameter: it only checks a registry SAE's
# width (unknown before it is fetched) and must not re-prepare the SAE when an N is added.
prepare.prepare_sae(snakemake.input.model, snakemake.params.model, layer, snakemake.params.sae,
                    {name: (kind, files[name]) for kind, name in snakemake.params.corpora},
                    snakemake.params.plan, snakemake.output[0], threads=snakemake.threads,
                    where=f"models.{snakemake.wildcards.model}.layers.{layer}.sae",
                    n_top=n_top_of(snakemake.config))
