# stsflow: SAE-based Transferability Scores, from config.yaml to STS tables and reports.
# Rules only wire files together; all logic lives in the stsflow package.

from snakemake.utils import min_version

min_version("9.0")


# The embedded default, unless the user names their own (--configfile): never merge the two.
if not workflow.overwrite_configfiles:
    # Snakemake's own message on a YAML syntax error names neither the file nor the line.
    from pathlib import Path
    from stsflow.config.schema import read_yaml

    if Path("config.yaml").exists():
        read_yaml("config.yaml")

    configfile: "config.yaml"


include: "rules/common.smk"
include: "rules/prepare.smk"
include: "rules/extract.smk"
include: "rules/reduce.smk"
include: "rules/validate.smk"
include: "rules/report.smk"


rule all:
    default_target: True
    input:
        all_targets(),
        MANIFEST,
