# Reductions over per-dimension statistics: shift vectors, one STS row per (domain, N), tables.


rule shift:
    """Predicted shift: ICL with t demonstrations vs plain, on the SFT queries; one file per
    feature space (the SAE's, and the panel's raw residual and random encoder), and the authors'
    unaligned row-by-row shift from the two runs' token streams."""
    input:
        stats=L.acts("{model}", "{layer}", "{sae}", "sft", "{sft}", "icl-s{seed}", stats=True),
        panel=L.panel_dir("{model}", "{layer}", "{sae}", "sft", "{sft}", "icl-s{seed}"),
        shard=L.acts("{model}", "{layer}", "{sae}", "sft", "{sft}", "icl-s{seed}"),
        plain_shard=L.acts("{model}", "{layer}", "{sae}", "sft", "{sft}", "plain"),
        plain_panel=L.panel_dir("{model}", "{layer}", "{sae}", "sft", "{sft}", "plain"),
    output:
        **L.shift_files("{model}", "{layer}", "{sae}", "{sft}", "s{seed}", unaligned=True),
    log:
        L.log("shift", "{model}/L{layer}/{sae}/{sft}/s{seed}"),
    priority: PRIORITY.STS_CHAIN
    localrule: True
    conda:
        "../envs/reduce.yaml"
    params:
        unaligned_rows=WF.sts["unaligned_rows"],
    script:
        "../workflow_scripts/shift.py"


use rule shift as true_shift with:
    input:
        stats=L.acts(
            "{model}", "{layer}", "{sae}", "sft", "{sft}", "tuned-{method}-s{seed}", stats=True
        ),
        panel=L.panel_dir("{model}", "{layer}", "{sae}", "sft", "{sft}", "tuned-{method}-s{seed}"),
    output:
        **L.shift_files("{model}", "{layer}", "{sae}", "{sft}", "true-{method}-s{seed}"),
    log:
        L.log("shift", "{model}/L{layer}/{sae}/{sft}/true-{method}-s{seed}"),
    localrule: True


rule sts:
    """One domain's scores for the top-N dimensions of a shift vector (predicted or true): every
    registered predictor, and the random-dimension draws."""
    input:
        unpack(INPUTS.sts),
    output:
        L.sts_part("{model}", "{layer}", "{sae}", "{sft}", "{shift}", "{n}", "{domain}"),
    log:
        L.log("sts", "{model}/L{layer}/{sae}/{sft}/{shift}/N{n}/{domain}"),
    priority: PRIORITY.STS_CHAIN
    localrule: True
    conda:
        "../envs/reduce.yaml"
    params:
        controls={k: WF.sts[k] for k in ("control_seed", "random_draws", "probe_folds")},
        # the registered predictors: registering one recomputes every score (not extraction)
        predictors=WF.predictors,
    script:
        "../workflow_scripts/sts.py"


rule sts_table:
    input:
        INPUTS.sts_parts,
    output:
        parquet=L.table("{model}", "{sft}", "sts"),
        csv=L.table("{model}", "{sft}", "sts", "csv"),
    log:
        L.log("sts_table", "{model}/{sft}"),
    priority: PRIORITY.STS_CHAIN
    localrule: True
    conda:
        "../envs/reduce.yaml"
    script:
        "../workflow_scripts/sts_table.py"


use rule sts_table as oracle_table with:
    input:
        INPUTS.oracle_parts,
    output:
        parquet=L.table("{model}", "{sft}", "sts_oracle"),
        csv=L.table("{model}", "{sft}", "sts_oracle", "csv"),
    log:
        L.log("oracle_table", "{model}/{sft}"),
    localrule: True


rule overlap:
    """|D_N ∩ D_N^true| / N: how many predicted dimensions fine-tuning really moved."""
    input:
        predicted=INPUTS.overlap_predicted,
        true=INPUTS.overlap_true,
    output:
        L.table("{model}", "{sft}", "overlap"),
    log:
        L.log("overlap", "{model}/{sft}"),
    localrule: True
    conda:
        "../envs/reduce.yaml"
    params:
        n_top=WF.sts["n_top"],
    script:
        "../workflow_scripts/overlap.py"


rule coverage:
    """Queries used and cut at extraction, answers cut at fine-tuning: what the numbers rest on."""
    input:
        unpack(INPUTS.coverage),
    output:
        parquet=L.table("{model}", "{sft}", "coverage"),
        csv=L.table("{model}", "{sft}", "coverage", "csv"),
    log:
        L.log("coverage", "{model}/{sft}"),
    localrule: True
    conda:
        "../envs/reduce.yaml"
    script:
        "../workflow_scripts/coverage.py"
