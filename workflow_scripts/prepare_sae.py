"""Rule prepare_sae: fetch, check or train one SAE of a (model, layer); its quality figures."""
from stsflow.config.checks import n_top_of
from stsflow.config.settings import ModelSettings, SaeSettings
from stsflow.jobs import prepare
from stsflow.jobs.common import hub_offline, setup_logging
from stsflow.workflow.bundles import SaeInputs

setup_logging(snakemake.log[0])
hub_offline()  # what it loads was fetched by fetch_model / fetch_sae
layer = int(snakemake.wildcards.layer)
files = SaeInputs.read(snakemake.input)
plan = snakemake.params.plan
# sts.n_top is read from the config, not passed as a parameter: it only checks a registry SAE's
# width (unknown before it is fetched) and must not re-prepare the SAE when an N is added.
where = snakemake.params.where
prepare.prepare_sae(files.model, ModelSettings.from_config(snakemake.params.model),
                    layer, SaeSettings.from_config(snakemake.params.sae, where), files.corpora,
                    plan["train"], plan["eval"], snakemake.output[0], threads=snakemake.threads,
                    where=where, n_top=n_top_of(snakemake.config), fetched=files.hub)
