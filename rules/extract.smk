# SAE features of every query token: one job per (model, layer, SAE, corpus, mode). ICL and
# tuned-model runs pair each token with the plain run of the same corpus and SAE, so they take
# its shard as input. A layer's sae runs the model (extract); its sweep SAEs encode the residuals
# that run kept (encode).


rule extract:
    """The layer's own SAE: the model runs on the corpus, its SAE encodes every query token, and
    the residuals are kept for the layer's sweep SAEs."""
    input:
        unpack(extract_inputs),
    output:
        shard=acts("{model}", "{layer}", "{sae}", "{kind}", "{corpus}", "{mode}"),
        stats=acts("{model}", "{layer}", "{sae}", "{kind}", "{corpus}", "{mode}", stats=True),
        # the baseline predictors' statistics, from the same forward pass (features.panel)
        panel=directory(panel_dir("{model}", "{layer}", "{sae}", "{kind}", "{corpus}", "{mode}")),
        residuals=directory(
            resid_dir("{model}", "{layer}", "{sae}", "{kind}", "{corpus}", "{mode}")
        ),
    log:
        f"{R}/logs/extract/{{model}}/L{{layer}}/{{sae}}/{{kind}}/{{corpus}}/{{mode}}.log",
    wildcard_constraints:
        sae=PRIMARY_SAES,
    priority: STS_CHAIN_PRIORITY
    conda:
        "../envs/gpu.yaml"
    threads: model_threads
    resources:
        gpu=gpu_units,
        mem_mb=host_request("extract", 8000),
        gpu_mem_mb=gpu_request("extract"),
        runtime=runtime_request("extract", 120),
    params:
        model=model_spec,
        sts=extract_settings,
    script:
        "../workflow_scripts/extract.py"


rule encode:
    """A sweep SAE: the residuals its layer's extraction kept, encoded into the same shard,
    statistics and panel (no model run: adding an SAE adds only these cheap jobs)."""
    input:
        unpack(encode_inputs),
    output:
        shard=acts("{model}", "{layer}", "{sae}", "{kind}", "{corpus}", "{mode}"),
        stats=acts("{model}", "{layer}", "{sae}", "{kind}", "{corpus}", "{mode}", stats=True),
        panel=directory(panel_dir("{model}", "{layer}", "{sae}", "{kind}", "{corpus}", "{mode}")),
    log:
        f"{R}/logs/encode/{{model}}/L{{layer}}/{{sae}}/{{kind}}/{{corpus}}/{{mode}}.log",
    wildcard_constraints:
        sae=SWEEP_SAES,
    priority: STS_CHAIN_PRIORITY
    conda:
        "../envs/gpu.yaml"
    threads: model_threads
    resources:
        gpu=gpu_units,
        mem_mb=host_request("encode", 8000),
        gpu_mem_mb=gpu_request("encode"),
        runtime=runtime_request("encode", 60),
    params:
        device=lambda w: MODELS[w.model]["device"],
        batch_size=lambda w: MODELS[w.model]["batch_size"],
        sts=extract_settings,
    script:
        "../workflow_scripts/encode.py"


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
    priority: STS_CHAIN_PRIORITY
    conda:
        "../envs/gpu.yaml"
    threads: model_threads
    resources:
        gpu=gpu_units,
        mem_mb=host_request("gradients", 8000),
        gpu_mem_mb=gpu_request("gradients"),
        runtime=runtime_request("gradients", 60),
    params:
        model=model_spec,
        grads={k: STS[k] for k in ("grad_examples", "grad_dim", "control_seed", "sample_seed")},
        targets=FT["lora_targets"],
    script:
        "../workflow_scripts/gradients.py"
