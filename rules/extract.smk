# SAE features of every query token: one job per (model, layer, corpus, mode). ICL and tuned-model
# runs pair each token with the plain run of the same corpus, so they take its shard as input.


def extract_inputs(w):
    inputs = {"model": f"{R}/models/{w.model}", "sae": f"{R}/sae/{w.model}/L{w.layer}",
              **data_files(w.kind, w.corpus)}
    if w.mode != "plain":
        inputs["reference"] = acts(w.model, w.layer, w.kind, w.corpus, "plain")
    return inputs


def extract_settings(w):
    keys = ("sft_tokens", "t") if w.kind == "sft" else ("domain_tokens", "m")
    return {k: STS[k] for k in keys + ("feat_dtype", "row_group_rows")}


rule extract:
    input:
        unpack(extract_inputs),
    output:
        shard=f"{R}/acts/{{model}}/L{{layer}}/{{kind}}/{{corpus}}/{{mode}}.parquet",
        stats=f"{R}/acts/{{model}}/L{{layer}}/{{kind}}/{{corpus}}/{{mode}}.stats.parquet",
    params:
        model=model_spec,
        sts=extract_settings,
    threads: 2
    resources:
        mem_mb=8000,
    log:
        f"{R}/logs/extract/{{model}}/L{{layer}}/{{kind}}/{{corpus}}/{{mode}}.log",
    script:
        "../workflow_scripts/extract.py"
