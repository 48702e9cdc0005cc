# The validation loop (docs/method.md#validation): fine-tune on each SFT set, evaluate base and tuned models on
# every domain, and tabulate the observed change. Only scheduled when finetune.enabled is true.


rule finetune:
    input:
        unpack(INPUTS.finetune),
    output:
        ckpt=directory(L.ckpt_dir("{model}", "{sft}", "{method}", "{seed}")),
        history=L.history_file("{model}", "{sft}", "{method}", "{seed}"),
    log:
        L.log("finetune", "{model}/{sft}/{method}-s{seed}"),
    benchmark:
        L.benchmark("finetune", "{model}/{sft}/{method}-s{seed}")
    wildcard_constraints:
        method=WF.patterns["trained_method"],
    priority: PRIORITY.FINETUNE
    conda:
        "../envs/gpu.yaml"
    threads: COSTS.rule_threads("finetune")
    resources:
        **COSTS.resources("finetune"),
    params:
        model=PARAMS.model,
        recipe=PARAMS.recipe,
    script:
        "../workflow_scripts/finetune.py"


# A run of a method that shards, sharded over finetune.processes GPUs of one node (FSDP): the same
# job, whose script starts one process per GPU (stsflow.finetune.distributed), as one job holding
# them all. The SLURM profile gives it its partition; its GPU count is this rule's.
if WF.ft["processes"] > 1:

    use rule finetune as finetune_sharded with:
        wildcard_constraints:
            method=WF.patterns["sharded_method"],
        threads: COSTS.rule_threads("finetune_sharded")
        resources:
            **COSTS.resources("finetune_sharded"),

    ruleorder: finetune_sharded > finetune


rule import_tuned:
    """A post-hoc pair's tuned model (posthoc.<label>), checked against the base (architecture,
    shape, tokenizer) and imported as the checkpoint of the run posthoc_<label>: every later job
    reads it as it reads a run fine-tuned here."""
    input:
        unpack(INPUTS.import_tuned),
    output:
        ckpt=directory(L.ckpt_dir("{model}", "{sft}", "{method}", "{seed}")),
        history=L.history_file("{model}", "{sft}", "{method}", "{seed}"),
    log:
        L.log("import_tuned", "{model}/{sft}/{method}-s{seed}"),
    wildcard_constraints:
        method=WF.patterns["posthoc_method"],
    priority: PRIORITY.FINETUNE
    localrule: True
    conda:
        "../envs/cpu.yaml"
    threads: 2
    resources:
        mem_mb=lambda wc, attempt: 8000 * attempt,
        runtime=lambda wc, attempt: 120 * attempt,
    params:
        label=PARAMS.posthoc_label,
        tuned=PARAMS.posthoc_tuned,
    script:
        "../workflow_scripts/import_tuned.py"


rule replay:
    """The base model's greedy answers to one domain's pool items (the data mixture)."""
    input:
        model=L.model_dir("{model}"),
        pool=L.domain_file("{domain}", "pool"),
    output:
        L.replay_file("{model}", "{domain}"),
    log:
        L.log("replay", "{model}/{domain}"),
    benchmark:
        L.benchmark("replay", "{model}/{domain}")
    conda:
        "../envs/gpu.yaml"
    threads: COSTS.rule_threads("replay")
    resources:
        **COSTS.resources("replay"),
    params:
        model=PARAMS.model,
        generation={k: WF.mix[k] for k in ("max_new_tokens", "batch_size")},
    script:
        "../workflow_scripts/replay.py"


checkpoint allocation:
    """A data-mixture run's split of its replay budget, before fine-tuning: the workflow learns
    from it which runs train on the same data, and trains those once
    (stsflow.workflow.mixture)."""
    input:
        unpack(INPUTS.allocation),
    output:
        L.allocation_file("{model}", "{sft}", "{method}", "{seed}"),
    log:
        L.log("allocation", "{model}/{sft}/{method}-s{seed}"),
    wildcard_constraints:
        method=WF.patterns["mixture_method"],
    localrule: True
    conda:
        "../envs/reduce.yaml"
    params:
        mixture=PARAMS.mixture_recipe,
    script:
        "../workflow_scripts/allocation.py"


rule evaluate_base:
    """One domain, the untouched model, every configured metric; per-item Parquet, and the mean
    residual of the domain's queries at every layer (the before/after-SFT similarity)."""
    input:
        unpack(INPUTS.evaluate_base),
    output:
        scores=L.eval_file("{model}", "base", "{domain}"),
        reps=L.reps_file("{model}", "base", "{domain}"),
    log:
        L.log("evaluate", "{model}/base/{domain}"),
    benchmark:
        L.benchmark("evaluate", "{model}/base/{domain}")
    conda:
        "../envs/gpu.yaml"
    threads: COSTS.rule_threads("evaluate_base")
    resources:
        **COSTS.resources("evaluate_base"),
    params:
        model=PARAMS.model,
        evaluate=PARAMS.evaluate(),
        subject=PARAMS.subject,
    script:
        "../workflow_scripts/evaluate.py"


use rule evaluate_base as evaluate_tuned with:
    input:
        # the checkpoint, the base it was trained from and, for a method anchored at SAE sites,
        # their SAEs
        unpack(INPUTS.evaluate_tuned),
    output:
        scores=L.eval_file("{model}", L.tuned_run("{sft}", "{method}", "{seed}"), "{domain}"),
        reps=L.reps_file("{model}", L.tuned_run("{sft}", "{method}", "{seed}"), "{domain}"),
    log:
        L.log("evaluate", "{model}/{sft}/{method}-s{seed}/{domain}"),
    benchmark:
        L.benchmark("evaluate", "{model}/{sft}/{method}-s{seed}/{domain}")


rule observed:
    """Δ = after − before per (method, seed, domain, metric), paired bootstrap CI over items."""
    input:
        base=INPUTS.observed_base,
        tuned=INPUTS.observed_tuned,
    output:
        parquet=L.table("{model}", "{sft}", "observed"),
        csv=L.table("{model}", "{sft}", "observed", "csv"),
    log:
        L.log("observed", "{model}/{sft}"),
    localrule: True
    conda:
        "../envs/reduce.yaml"
    params:
        n_boot=WF.eval["n_boot"],
    script:
        "../workflow_scripts/observed.py"
