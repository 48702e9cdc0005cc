# SAE features of every query token: one job per (model, layer, SAE, corpus, mode). ICL and
# tuned-model runs pair each token with the plain run of the same corpus and SAE, so they take
# its shard as input. A layer's sae runs the model (extract); its sweep SAEs encode the residuals
# that run kept (encode).


rule extract:
    """The layer's own SAE: the model runs on the corpus, its SAE encodes every query token, and
    the residuals are kept for the layer's sweep SAEs."""
    input:
        unpack(INPUTS.extract),
    output:
        shard=L.acts("{model}", "{layer}", "{sae}", "{kind}", "{corpus}", "{mode}"),
        stats=L.acts("{model}", "{layer}", "{sae}", "{kind}", "{corpus}", "{mode}", stats=True),
        # the baseline predictors' statistics, from the same forward pass (features.panel)
        panel=directory(L.panel_dir("{model}", "{layer}", "{sae}", "{kind}", "{corpus}", "{mode}")),
        residuals=directory(
            L.resid_dir("{model}", "{layer}", "{sae}", "{kind}", "{corpus}", "{mode}")
        ),
    log:
        L.log("extract", "{model}/L{layer}/{sae}/{kind}/{corpus}/{mode}"),
    benchmark:
        L.benchmark("extract", "{model}/L{layer}/{sae}/{kind}/{corpus}/{mode}")
    wildcard_constraints:
        sae=WF.patterns["primary_sae"],
    priority: PRIORITY.STS_CHAIN
    # the prediction's jobs, one cluster job where the config asks (job_groups)
    group:
        COSTS.group("extract")
    conda:
        "../envs/gpu.yaml"
    threads: COSTS.rule_threads("extract")
    resources:
        **COSTS.resources("extract"),
    params:
        model=PARAMS.model,
        sts=PARAMS.extract,
    script:
        "../workflow_scripts/extract.py"


rule encode:
    """A sweep SAE: the residuals its layer's extraction kept, encoded into the same shard,
    statistics and panel (no model run: adding an SAE adds only these cheap jobs)."""
    input:
        unpack(INPUTS.encode),
    output:
        shard=L.acts("{model}", "{layer}", "{sae}", "{kind}", "{corpus}", "{mode}"),
        stats=L.acts("{model}", "{layer}", "{sae}", "{kind}", "{corpus}", "{mode}", stats=True),
        panel=directory(L.panel_dir("{model}", "{layer}", "{sae}", "{kind}", "{corpus}", "{mode}")),
    log:
        L.log("encode", "{model}/L{layer}/{sae}/{kind}/{corpus}/{mode}"),
    benchmark:
        L.benchmark("encode", "{model}/L{layer}/{sae}/{kind}/{corpus}/{mode}")
    wildcard_constraints:
        sae=WF.patterns["sweep_sae"],
    priority: PRIORITY.STS_CHAIN
    # the prediction's jobs, one cluster job where the config asks (job_groups)
    group:
        COSTS.group("encode")
    conda:
        "../envs/gpu.yaml"
    threads: COSTS.rule_threads("encode")
    resources:
        **COSTS.resources("encode"),
    params:
        device=lambda w: WF.models[w.model]["device"],
        batch_size=lambda w: WF.models[w.model]["batch_size"],
        sts=PARAMS.extract,
    script:
        "../workflow_scripts/encode.py"


rule gradients:
    """Mean low-rank gradient of a corpus on the base model: SFT examples, or a domain's worked
    examples (the grad_sim predictor)."""
    input:
        unpack(INPUTS.gradients),
    output:
        L.grad_file("{model}", "{kind}", "{corpus}"),
    log:
        L.log("gradients", "{model}/{kind}/{corpus}"),
    benchmark:
        L.benchmark("gradients", "{model}/{kind}/{corpus}")
    priority: PRIORITY.STS_CHAIN
    # the prediction's jobs, one cluster job where the config asks (job_groups)
    group:
        COSTS.group("gradients")
    conda:
        "../envs/gpu.yaml"
    threads: COSTS.rule_threads("gradients")
    resources:
        **COSTS.resources("gradients"),
    params:
        model=PARAMS.model,
        grads={k: WF.sts[k] for k in ("grad_examples", "grad_dim", "control_seed", "sample_seed")},
        targets=WF.ft["lora_targets"],
    script:
        "../workflow_scripts/gradients.py"
