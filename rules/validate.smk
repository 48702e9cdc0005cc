# The validation loop (SPEC §5): fine-tune on each SFT set, evaluate base and tuned models on
# every domain, and tabulate the observed change. Only scheduled when finetune.enabled is true.


rule finetune:
    input:
        unpack(finetune_inputs),
    output:
        ckpt=directory(ckpt_dir("{model}", "{sft}", "{method}", "{seed}")),
        history=history_file("{model}", "{sft}", "{method}", "{seed}"),
    log:
        f"{R}/logs/finetune/{{model}}/{{sft}}/{{method}}-s{{seed}}.log",
    wildcard_constraints:
        method=TRAINED_METHOD_PATTERN,
    priority: FINETUNE_PRIORITY
    conda:
        "../envs/gpu.yaml"
    threads: FINETUNE_THREADS
    resources:
        gpu=gpu_units,
        mem_mb=host_request("finetune", 16000),
        gpu_mem_mb=gpu_request("finetune"),
        runtime=runtime_request("finetune", 240),
    params:
        model=model_spec,
        recipe=recipe,
    script:
        "../workflow_scripts/finetune.py"


# A full fine-tune sharded over finetune.processes GPUs of one node (FSDP): the same job, whose
# script starts one process per GPU (stsflow.finetune.distributed), as one job holding them all.
# The SLURM profile gives it its partition; its GPU count is this rule's, read from the config.
if FT["processes"] > 1:

    use rule finetune as finetune_sharded with:
        wildcard_constraints:
            method=FULL_METHOD_PATTERN,
        threads: lambda w: FINETUNE_THREADS * FT["processes"]
        resources:
            # a CPU model (`device: cpu`): gloo processes, no GPU. Not runs_on_cpu: `auto` is
            # planned for GPUs, as the machine that plans (a login node) may have none
            gpu=lambda w: 0 if MODELS[w.model]["device"] == "cpu" else FT["processes"],
            mem_mb=host_request("finetune", 16000),
            gpu_mem_mb=gpu_request("finetune"),
            runtime=runtime_request("finetune", 240),

    ruleorder: finetune_sharded > finetune


rule import_tuned:
    """A post-hoc pair's tuned model (posthoc.<label>), checked against the base (architecture,
    shape, tokenizer) and imported as the checkpoint of the run posthoc_<label>: every later job
    reads it as it reads a run fine-tuned here."""
    input:
        unpack(import_inputs),
    output:
        ckpt=directory(ckpt_dir("{model}", "{sft}", "{method}", "{seed}")),
        history=history_file("{model}", "{sft}", "{method}", "{seed}"),
    log:
        f"{R}/logs/import_tuned/{{model}}/{{sft}}/{{method}}-s{{seed}}.log",
    wildcard_constraints:
        method=POSTHOC_METHOD_PATTERN,
    priority: FINETUNE_PRIORITY
    conda:
        "../envs/cpu.yaml"
    threads: 2
    resources:
        mem_mb=lambda wc, attempt: 8000 * attempt,
        runtime=lambda wc, attempt: 120 * attempt,
    params:
        label=lambda w: posthoc_pair(w.method)[1],
        tuned=lambda w: posthoc_pair(w.method)[0]["tuned"],
    script:
        "../workflow_scripts/import_tuned.py"


rule replay:
    """The base model's greedy answers to one domain's pool items (the data mixture)."""
    input:
        model=model_dir("{model}"),
        pool=domain_file("{domain}", "pool"),
    output:
        replay_file("{model}", "{domain}"),
    log:
        f"{R}/logs/replay/{{model}}/{{domain}}.log",
    conda:
        "../envs/gpu.yaml"
    threads: model_threads
    resources:
        gpu=gpu_units,
        mem_mb=host_request("replay", 8000),
        gpu_mem_mb=gpu_request("replay"),
        runtime=runtime_request("replay", 60),
    params:
        model=model_spec,
        generation=lambda w: {k: MIX[k] for k in ("max_new_tokens", "batch_size")},
    script:
        "../workflow_scripts/replay.py"


rule evaluate_base:
    """One domain, the untouched model, every configured metric; per-item Parquet, and the mean
    residual of the domain's queries at every layer (the before/after-SFT similarity)."""
    input:
        model=model_dir("{model}"),
        test=domain_file("{domain}", "test"),
        demos=domain_file("{domain}", "demos"),
    output:
        scores=eval_file("{model}", "base", "{domain}"),
        reps=reps_file("{model}", "base", "{domain}"),
    log:
        f"{R}/logs/evaluate/{{model}}/base/{{domain}}.log",
    conda:
        "../envs/gpu.yaml"
    threads: model_threads
    resources:
        gpu=gpu_units,
        mem_mb=host_request("evaluate_base", 8000),
        gpu_mem_mb=gpu_request("evaluate_base"),
        runtime=runtime_request("evaluate_base", 120),
    params:
        model=model_spec,
        evaluate=passed(EVAL),
        subject=lambda w: DOMAINS[w.domain]["subject"] or w.domain.replace("_", " "),
    script:
        "../workflow_scripts/evaluate.py"


use rule evaluate_base as evaluate_tuned with:
    input:
        # the checkpoint, the base it was trained from and, for sae_select, the maps' SAEs
        unpack(evaluate_tuned_inputs),
    output:
        scores=eval_file("{model}", tuned_run("{sft}", "{method}", "{seed}"), "{domain}"),
        reps=reps_file("{model}", tuned_run("{sft}", "{method}", "{seed}"), "{domain}"),
    log:
        f"{R}/logs/evaluate/{{model}}/{{sft}}/{{method}}-s{{seed}}/{{domain}}.log",


rule observed:
    """Δ = after − before per (method, seed, domain, metric), paired bootstrap CI over items."""
    input:
        base=lambda w: [eval_file(w.model, "base", d) for d in DOMAINS],
        tuned=lambda w: [
            eval_file(w.model, tuned_run(w.sft, m, s), d)
            for m, s in runs(w.model, w.sft)
            for d in DOMAINS
        ],
    output:
        parquet=table("{model}", "{sft}", "observed"),
        csv=table("{model}", "{sft}", "observed", "csv"),
    log:
        f"{R}/logs/observed/{{model}}/{{sft}}.log",
    conda:
        "../envs/reduce.yaml"
    params:
        n_boot=EVAL["n_boot"],
    script:
        "../workflow_scripts/observed.py"
