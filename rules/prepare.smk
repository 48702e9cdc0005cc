# Data, models and SAEs: prepared once, cached under results/.


rule materialize_sft:
    output:
        sft_file("{corpus}"),
    log:
        f"{R}/logs/materialize_sft/{{corpus}}.log",
    priority: STS_CHAIN_PRIORITY
    conda:
        "../envs/cpu.yaml"
    params:
        spec=lambda w: corpus_spec(SFTS, w.corpus),
    script:
        "../workflow_scripts/materialize.py"


rule materialize_domain:
    output:
        test=domain_file("{corpus}", "test"),
        demos=domain_file("{corpus}", "demos"),
    log:
        f"{R}/logs/materialize_domain/{{corpus}}.log",
    priority: STS_CHAIN_PRIORITY
    conda:
        "../envs/cpu.yaml"
    params:
        spec=lambda w: corpus_spec(DOMAINS, w.corpus),
    script:
        "../workflow_scripts/materialize.py"


rule materialize_pool:
    """A domain's pool split (domains.<name>.pool), refused where it shares a question with
    its test source (whole) or demonstrations: the data mixture's replay prompts."""
    output:
        domain_file("{corpus}", "pool"),
    log:
        f"{R}/logs/materialize_pool/{{corpus}}.log",
    conda:
        "../envs/cpu.yaml"
    params:
        spec=pool_spec,
        against=pool_against,
    script:
        "../workflow_scripts/materialize_pool.py"


rule fetch_model:
    """A hub model's weights, config and tokenizer into the Hugging Face cache, where the
    network is (see hub_downloads); the jobs that load it then read the cache."""
    output:
        hub_record("models", "{model}"),
    log:
        f"{R}/logs/fetch_model/{{model}}.log",
    priority: STS_CHAIN_PRIORITY
    conda:
        "../envs/cpu.yaml"
    params:
        source=lambda w: MODELS[w.model]["source"],
    script:
        "../workflow_scripts/fetch.py"


rule fetch_sae:
    """A registry or hub SAE's folder into the Hugging Face cache (see fetch_model)."""
    output:
        hub_record("sae", "{model}/L{layer}/{sae}"),
    log:
        f"{R}/logs/fetch_sae/{{model}}/L{{layer}}/{{sae}}.log",
    priority: STS_CHAIN_PRIORITY
    conda:
        "../envs/cpu.yaml"
    params:
        sae=sae_spec,
    script:
        "../workflow_scripts/fetch.py"


rule prepare_model:
    input:
        unpack(model_inputs),
    output:
        directory(model_dir("{model}")),
    log:
        f"{R}/logs/prepare_model/{{model}}.log",
    priority: STS_CHAIN_PRIORITY
    conda:
        "../envs/cpu.yaml"
    threads: 2
    resources:
        mem_mb=lambda wc, attempt: 8000 * attempt,
        runtime=lambda wc, attempt: 120 * attempt,
    params:
        spec=model_spec,
    script:
        "../workflow_scripts/prepare_model.py"


rule prepare_sae:
    """Registry or local SAE (checked against the model and layer), or one trained here with
    sae-lens on the model's activations; then its quality on held-out corpus tokens."""
    input:
        unpack(sae_inputs),
    output:
        directory(sae_dir("{model}", "{layer}", "{sae}")),
    log:
        f"{R}/logs/prepare_sae/{{model}}/L{{layer}}/{{sae}}.log",
    priority: SAE_PRIORITY
    conda:
        "../envs/gpu.yaml"
    threads: model_threads
    resources:
        gpu=gpu_units,
        mem_mb=host_request("prepare_sae", 8000),
        gpu_mem_mb=gpu_request("prepare_sae"),
        runtime=runtime_request("prepare_sae", 120),
    params:
        model=model_spec,
        sae=sae_spec,
        plan=sae_plan,
        where=sae_where,
    script:
        "../workflow_scripts/prepare_sae.py"
