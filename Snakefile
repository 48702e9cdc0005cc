# stsflow: SAE-based Transferability Scores, from config.yaml to STS tables and reports.
# Rules only wire files together; all logic lives in the stsflow package.

from snakemake.utils import min_version

min_version("9.0")


# Snakemake's own YAML reading names neither the file nor the line of a syntax error, and keeps
# the last of a key written twice: every config file is read by stsflow first.
from pathlib import Path
from stsflow.config.schema import read_configs

read_configs(workflow.overwrite_configfiles or [p for p in ["config.yaml"] if Path(p).exists()])

# The embedded default, unless the user names their own (--configfile): never merge the two.
if not workflow.overwrite_configfiles:

    configfile: "config.yaml"


include: "rules/common.smk"
include: "rules/prepare.smk"
include: "rules/extract.smk"
include: "rules/reduce.smk"
include: "rules/validate.smk"
include: "rules/report.smk"


# Run by the Snakemake process itself, never submitted to a cluster: reading materialised files
# and writing small tables or reports takes seconds (each `sts` job about 2 s), while a SLURM job
# costs a scheduling round; at paper scale these were 281 of 391 submissions. The
# materialisation jobs fetch hub datasets and prepare_model resolves a hub model's revision,
# which needs the network that login nodes have. Every rule that runs a model or an SAE (the GPU
# environment) stays a cluster job (a test checks the two lists cover every rule).
localrules:
    all,
    materialize_sft,
    materialize_domain,
    materialize_pool,
    prepare_model,
    import_tuned,
    shift,
    true_shift,
    sts,
    sts_table,
    oracle_table,
    overlap,
    coverage,
    observed,
    report,
    manifest,


# Downloads of models and SAEs run here too unless the config says the compute nodes are online
# (hub_downloads: cluster, set by a profile): on many clusters only the login node is.
if CONFIG["hub_downloads"] == "local":

    localrules:
        fetch_model,
        fetch_sae,


rule all:
    default_target: True
    input:
        all_targets(),
        MANIFEST,
