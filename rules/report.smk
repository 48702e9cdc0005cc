# Correlation of STS with observed accuracy changes: tables, plots, Markdown and HTML.


rule report:
    input:
        unpack(INPUTS.report),
    output:
        html=report(
            L.report_file("{model}", "{sft}", "summary.html"),
            category="{model} / {sft}",
            subcategory="Summary",
            caption="captions/summary.rst",
            labels={"model": "{model}", "sft": "{sft}", "figure": "summary"},
        ),
        md=L.report_file("{model}", "{sft}", "summary.md"),
        corr=report(
            L.report_file("{model}", "{sft}", "correlations.parquet"),
            category="{model} / {sft}",
            subcategory="Tables",
            caption="captions/correlations.rst",
            labels={"model": "{model}", "sft": "{sft}", "figure": "correlations"},
        ),
        comparison=report(
            L.report_file("{model}", "{sft}", "comparison.parquet"),
            category="{model} / {sft}",
            subcategory="Tables",
            caption="captions/comparison.rst",
            labels={"model": "{model}", "sft": "{sft}", "figure": "predictor panel"},
        ),
        forest=report(
            L.report_file("{model}", "{sft}", "forest.png"),
            category="{model} / {sft}",
            subcategory="Predictor panel",
            caption="captions/forest.rst",
            labels={"model": "{model}", "sft": "{sft}", "figure": "forest plot"},
        ),
        bars=report(
            L.report_file("{model}", "{sft}", "bars.png"),
            category="{model} / {sft}",
            subcategory="Summary",
            caption="captions/bars.rst",
            labels={"model": "{model}", "sft": "{sft}", "figure": "STS and Δ per domain"},
        ),
        plots=[
            report(
                L.report_file("{model}", "{sft}", f"scatter_{v}.png"),
                category="{model} / {sft}",
                subcategory="Scatter plots",
                caption="captions/scatter.rst",
                labels={"model": "{model}", "sft": "{sft}", "figure": v},
            )
            for v in WF.sts_variants
        ],
    log:
        L.log("report", "{model}/{sft}"),
    localrule: True
    conda:
        "../envs/reduce.yaml"
    params:
        # the provenance block names the resolved config as far as this model and SFT set are
        # concerned: any edit of that rewrites the report (seconds), nothing upstream
        config_sha256=PARAMS.report_config_sha256,
        observed=PARAMS.observed,
        report=PARAMS.report(),
        target=PARAMS.target,
        primary=PARAMS.primary,
    script:
        "../workflow_scripts/report.py"


rule cards:
    """Feature cards of the top shifted dimensions of one seed's prediction and of the fine-tuning
    runs of that seed: contexts and frequencies from the plain shards, the logit lens from the
    model's LM head (no forward pass)."""
    input:
        unpack(INPUTS.cards),
    output:
        report(
            L.cards_file("{model}", "{layer}", "{sae}", "{sft}", "{seed}"),
            category="{model} / {sft}",
            subcategory="Feature cards",
            caption="captions/cards.rst",
            labels={
                "model": "{model}",
                "sft": "{sft}",
                "figure": "cards L{layer} {sae} seed {seed}",
            },
        ),
    log:
        L.log("cards", "{model}/L{layer}/{sae}/{sft}/s{seed}"),
    conda:
        "../envs/gpu.yaml"
    threads: COSTS.rule_threads("cards")
    resources:
        **COSTS.resources("cards"),
    params:
        model=PARAMS.model,
        cards=CONFIG["cards"],
    script:
        "../workflow_scripts/cards.py"


rule manifest:
    """Reviewer's record of the run: resolved config, versions, identities, sha256 of outputs."""
    input:
        WF.targets(),
    output:
        L.manifest,
    log:
        L.log("manifest"),
    localrule: True
    conda:
        "../envs/reduce.yaml"
    params:
        config=CONFIG,
    script:
        "../workflow_scripts/manifest.py"
