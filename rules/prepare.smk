# Data, models and SAEs: prepared once, cached under results/.


rule materialize_sft:
    output:
        sft_file("{corpus}"),
    params:
        spec=lambda w: corpus_spec(SFTS, w.corpus),
    log:
        f"{R}/logs/materialize_sft/{{corpus}}.log",
    conda:
        "../envs/cpu.yaml"
    script:
        "../workflow_scripts/materialize.py"


rule materialize_domain:
    output:
        test=domain_file("{corpus}", "test"),
        demos=domain_file("{corpus}", "demos"),
    params:
        spec=lambda w: corpus_spec(DOMAINS, w.corpus),
    log:
        f"{R}/logs/materialize_domain/{{corpus}}.log",
    conda:
        "../envs/cpu.yaml"
    script:
        "../workflow_scripts/materialize.py"


rule prepare_model:
    output:
        directory(model_dir("{model}")),
    params:
        spec=model_spec,
    threads: 2
    resources:
        mem_mb=lambda wc, attempt: 8000 * attempt,
        runtime=lambda wc, attempt: 120 * attempt,
    log:
        f"{R}/logs/prepare_model/{{model}}.log",
    conda:
        "../envs/cpu.yaml"
    script:
        "../workflow_scripts/prepare_model.py"


rule prepare_sae:
    """Registry or local SAE (checked against the model and layer), or one trained here with
    sae-lens on the model's activations; then its quality on held-out corpus tokens."""
    input:
        unpack(sae_inputs),
    output:
        directory(sae_dir("{model}", "{layer}")),
    params:
        model=model_spec,
        sae=sae_spec,
        plan=sae_plan,
    threads: 2
    resources:
        mem_mb=lambda wc, attempt: 8000 * attempt,
        runtime=lambda wc, attempt: 120 * attempt,
    log:
        f"{R}/logs/prepare_sae/{{model}}/L{{layer}}.log",
    conda:
        "../envs/gpu.yaml"
    script:
        "../workflow_scripts/prepare_sae.py"
