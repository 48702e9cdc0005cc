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
include: "rules/matrix.smk"


# Every rule that runs no model is a local rule (`localrule: True`): run by the Snakemake
# process itself, never submitted to a cluster, as reading materialised files and writing small
# tables takes seconds while a SLURM job costs a scheduling round. The rules that run a model or
# an SAE are cluster jobs, with their costs declared in stsflow.workflow.costs (a test checks
# that the two sets cover every rule). Hub downloads run locally unless hub_downloads: cluster.


rule all:
    default_target: True
    input:
        WF.targets(),
        L.manifest,
    localrule: True
