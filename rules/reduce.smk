# Reductions over per-dimension statistics: shift vectors, one STS row per (domain, N), tables.


rule shift:
    """Predicted shift: ICL with t demonstrations vs plain, on the SFT queries; one file per
    feature space (the SAE's, and the panel's raw residual and random encoder), and the authors'
    unaligned row-by-row shift from the two runs' token streams."""
    input:
        stats=acts("{model}", "{layer}", "{sae}", "sft", "{sft}", "icl-s{seed}", stats=True),
        panel=panel_dir("{model}", "{layer}", "{sae}", "sft", "{sft}", "icl-s{seed}"),
        shard=acts("{model}", "{layer}", "{sae}", "sft", "{sft}", "icl-s{seed}"),
        plain_shard=acts("{model}", "{layer}", "{sae}", "sft", "{sft}", "plain"),
        plain_panel=panel_dir("{model}", "{layer}", "{sae}", "sft", "{sft}", "plain"),
    output:
        **shift_files("{model}", "{layer}", "{sae}", "{sft}", "s{seed}", unaligned=True),
    log:
        f"{R}/logs/shift/{{model}}/L{{layer}}/{{sae}}/{{sft}}/s{{seed}}.log",
    priority: STS_CHAIN_PRIORITY
    conda:
        "../envs/reduce.yaml"
    params:
        unaligned_rows=STS["unaligned_rows"],
    script:
        "../workflow_scripts/shift.py"


use rule shift as true_shift with:
    input:
        stats=acts(
            "{model}", "{layer}", "{sae}", "sft", "{sft}", "tuned-{method}-s{seed}", stats=True
        ),
        panel=panel_dir("{model}", "{layer}", "{sae}", "sft", "{sft}", "tuned-{method}-s{seed}"),
    output:
        **shift_files("{model}", "{layer}", "{sae}", "{sft}", "true-{method}-s{seed}"),
    log:
        f"{R}/logs/shift/{{model}}/L{{layer}}/{{sae}}/{{sft}}/true-{{method}}-s{{seed}}.log",


rule sts:
    """One domain's scores for the top-N dimensions of a shift vector (predicted or true): every
    registered predictor, and the random-dimension draws."""
    input:
        unpack(sts_inputs),
    output:
        sts_part("{model}", "{layer}", "{sae}", "{sft}", "{shift}", "{n}", "{domain}"),
    log:
        f"{R}/logs/sts/{{model}}/L{{layer}}/{{sae}}/{{sft}}/{{shift}}/N{{n}}/{{domain}}.log",
    priority: STS_CHAIN_PRIORITY
    conda:
        "../envs/reduce.yaml"
    params:
        controls={k: STS[k] for k in ("control_seed", "random_draws", "probe_folds")},
        # the registered predictors: registering one recomputes every score (not extraction)
        predictors=list(PREDICTORS),
    script:
        "../workflow_scripts/sts.py"


rule sts_table:
    input:
        lambda w: sts_parts(w.model, w.sft),
    output:
        parquet=table("{model}", "{sft}", "sts"),
        csv=table("{model}", "{sft}", "sts", "csv"),
    log:
        f"{R}/logs/sts_table/{{model}}/{{sft}}.log",
    priority: STS_CHAIN_PRIORITY
    conda:
        "../envs/reduce.yaml"
    script:
        "../workflow_scripts/sts_table.py"


use rule sts_table as oracle_table with:
    input:
        lambda w: oracle_parts(w.model, w.sft),
    output:
        parquet=table("{model}", "{sft}", "sts_oracle"),
        csv=table("{model}", "{sft}", "sts_oracle", "csv"),
    log:
        f"{R}/logs/oracle_table/{{model}}/{{sft}}.log",


rule overlap:
    """|D_N ∩ D_N^true| / N: how many predicted dimensions fine-tuning really moved."""
    input:
        predicted=lambda w: [
            shift_file(w.model, layer, sae, w.sft, str(Shift(seed)))
            for layer, sae in sites(w.model)
            for seed in SEEDS
        ],
        true=lambda w: [
            shift_file(w.model, layer, sae, w.sft, str(Shift(seed, m)))
            for m, seed in runs(w.model, w.sft)
            for layer, sae in sites(w.model)
        ],
    output:
        table("{model}", "{sft}", "overlap"),
    log:
        f"{R}/logs/overlap/{{model}}/{{sft}}.log",
    conda:
        "../envs/reduce.yaml"
    params:
        n_top=STS["n_top"],
    script:
        "../workflow_scripts/overlap.py"


rule coverage:
    """Queries used and cut at extraction, answers cut at fine-tuning: what the numbers rest on."""
    input:
        unpack(coverage_inputs),
    output:
        parquet=table("{model}", "{sft}", "coverage"),
        csv=table("{model}", "{sft}", "coverage", "csv"),
    log:
        f"{R}/logs/coverage/{{model}}/{{sft}}.log",
    conda:
        "../envs/reduce.yaml"
    script:
        "../workflow_scripts/coverage.py"
