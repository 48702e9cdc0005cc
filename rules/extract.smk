# SAE features of every query token: one job per (model, layer, corpus, mode). ICL and tuned-model
# runs pair each token with the plain run of the same corpus, so they take its shard as input.


rule extract:
    input:
        unpack(extract_inputs),
    output:
        shard=acts("{model}", "{layer}", "{kind}", "{corpus}", "{mode}"),
        stats=acts("{model}", "{layer}", "{kind}", "{corpus}", "{mode}", stats=True),
        # the baseline predictors' statistics, from the same forward pass (features.panel)
        panel=directory(panel_dir("{model}", "{layer}", "{kind}", "{corpus}", "{mode}")),
    log:
        f"{R}/logs/extract/{{model}}/L{{layer}}/{{kind}}/{{corpus}}/{{mode}}.log",
    conda:
        "../envs/gpu.yaml"
    threads: 2
    resources:
        mem_mb=lambda wc, attempt: 8000 * attempt,
        runtime=lambda wc, attempt: 120 * attempt,
    params:
        model=model_spec,
        sts=extract_settings,
    script:
        "../workflow_scripts/extract.py"


rule gradients:
    """Mean low-rank gradient of a corpus on the base model: SFT examples, or a domain's worked
    examples (the grad_sim predictor)."""
    input:
        model=lambda w: model_dir(w.model),
        data=lambda w: sft_file(w.corpus) if w.kind == "sft" else domain_file(w.corpus, "demos"),
    output:
        grad_file("{model}", "{kind}", "{corpus}"),
    log:
        f"{R}/logs/gradients/{{model}}/{{kind}}/{{corpus}}.log",
    conda:
        "../envs/gpu.yaml"
    threads: 2
    resources:
        mem_mb=lambda wc, attempt: 8000 * attempt,
        runtime=lambda wc, attempt: 60 * attempt,
    params:
        model=model_spec,
        grads={k: STS[k] for k in ("grad_examples", "grad_dim", "control_seed", "sample_seed")},
        targets=FT["lora_targets"],
    script:
        "../workflow_scripts/gradients.py"
