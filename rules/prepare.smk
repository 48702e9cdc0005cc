# Data, models and SAEs: prepared once, cached under results/.


rule materialize_sft:
    output:
        L.sft_file("{corpus}"),
    log:
        L.log("materialize_sft", "{corpus}"),
    priority: PRIORITY.STS_CHAIN
    localrule: True
    conda:
        "../envs/cpu.yaml"
    params:
        spec=PARAMS.sft_corpus,
    script:
        "../workflow_scripts/materialize.py"


rule materialize_domain:
    output:
        test=L.domain_file("{corpus}", "test"),
        demos=L.domain_file("{corpus}", "demos"),
    log:
        L.log("materialize_domain", "{corpus}"),
    priority: PRIORITY.STS_CHAIN
    localrule: True
    conda:
        "../envs/cpu.yaml"
    params:
        spec=PARAMS.domain_corpus,
    script:
        "../workflow_scripts/materialize.py"


rule materialize_pool:
    """A domain's pool split (domains.<name>.pool), refused where it shares a question with
    its test source (whole) or demonstrations: the data mixture's replay prompts."""
    output:
        L.domain_file("{corpus}", "pool"),
    log:
        L.log("materialize_pool", "{corpus}"),
    localrule: True
    conda:
        "../envs/cpu.yaml"
    params:
        spec=PARAMS.pool,
        against=PARAMS.pool_against,
    script:
        "../workflow_scripts/materialize_pool.py"


rule fetch_model:
    """A hub model's weights, config and tokenizer into the Hugging Face cache, where the
    network is (hub_downloads); the jobs that load it then read the cache."""
    output:
        L.hub_record("models", "{model}"),
    log:
        L.log("fetch_model", "{model}"),
    priority: PRIORITY.STS_CHAIN
    localrule: WF.hub_downloads_local
    conda:
        "../envs/cpu.yaml"
    params:
        source=lambda w: WF.models[w.model]["source"],
    script:
        "../workflow_scripts/fetch.py"


rule fetch_sae:
    """A registry or hub SAE's folder into the Hugging Face cache (see fetch_model)."""
    output:
        L.hub_record("sae", "{model}/L{layer}/{sae}"),
    log:
        L.log("fetch_sae", "{model}/L{layer}/{sae}"),
    priority: PRIORITY.STS_CHAIN
    localrule: WF.hub_downloads_local
    conda:
        "../envs/cpu.yaml"
    params:
        sae=PARAMS.sae,
    script:
        "../workflow_scripts/fetch.py"


rule prepare_model:
    """A loadable model directory (a hub model's revision resolved, where the network is; a
    GGUF file converted once)."""
    input:
        unpack(INPUTS.prepare_model),
    output:
        directory(L.model_dir("{model}")),
    log:
        L.log("prepare_model", "{model}"),
    priority: PRIORITY.STS_CHAIN
    localrule: True
    conda:
        "../envs/cpu.yaml"
    threads: 2
    resources:
        mem_mb=lambda wc, attempt: 8000 * attempt,
        runtime=lambda wc, attempt: 120 * attempt,
    params:
        spec=PARAMS.model,
    script:
        "../workflow_scripts/prepare_model.py"


rule prepare_sae:
    """Registry or local SAE (checked against the model and layer), or one trained here with
    sae-lens on the model's activations; then its quality on held-out corpus tokens."""
    input:
        unpack(INPUTS.prepare_sae),
    output:
        directory(L.sae_dir("{model}", "{layer}", "{sae}")),
    log:
        L.log("prepare_sae", "{model}/L{layer}/{sae}"),
    benchmark:
        L.benchmark("prepare_sae", "{model}/L{layer}/{sae}")
    priority: PRIORITY.SAE
    # the prediction's jobs, one cluster job where the config asks (job_groups)
    group:
        COSTS.group("prepare_sae")
    conda:
        "../envs/gpu.yaml"
    threads: COSTS.rule_threads("prepare_sae")
    resources:
        **COSTS.resources("prepare_sae"),
    params:
        model=PARAMS.model,
        sae=PARAMS.sae,
        plan=PARAMS.sae_plan,
        where=PARAMS.sae_where,
    script:
        "../workflow_scripts/prepare_sae.py"
