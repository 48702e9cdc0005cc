# Reductions over per-dimension statistics: shift vectors, one STS row per (domain, N), tables.


rule shift:
    input:
        stats=acts("{model}", "{layer}", "sft", "{sft}", "icl-s{seed}", stats=True),
    output:
        f"{R}/shift/{{model}}/L{{layer}}/{{sft}}/s{{seed}}.parquet",
    log:
        f"{R}/logs/shift/{{model}}/L{{layer}}/{{sft}}/s{{seed}}.log",
    script:
        "../workflow_scripts/shift.py"


rule sts:
    input:
        shift=f"{R}/shift/{{model}}/L{{layer}}/{{sft}}/s{{seed}}.parquet",
        plain=acts("{model}", "{layer}", "domain", "{domain}", "plain", stats=True),
        icl=acts("{model}", "{layer}", "domain", "{domain}", "icl", stats=True),
    output:
        f"{R}/sts/{{model}}/L{{layer}}/{{sft}}/s{{seed}}/N{{n}}/{{domain}}.parquet",
    log:
        f"{R}/logs/sts/{{model}}/L{{layer}}/{{sft}}/s{{seed}}/N{{n}}/{{domain}}.log",
    script:
        "../workflow_scripts/sts.py"


rule sts_table:
    input:
        lambda w: sts_parts(w.model, w.sft),
    output:
        parquet=f"{R}/tables/{{model}}/{{sft}}/sts.parquet",
        csv=f"{R}/tables/{{model}}/{{sft}}/sts.csv",
    log:
        f"{R}/logs/sts_table/{{model}}/{{sft}}.log",
    script:
        "../workflow_scripts/sts_table.py"
