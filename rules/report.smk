# Correlation of STS with observed accuracy changes: tables, plots, Markdown and HTML.

from stsflow.config.primary import resolve_primary
from stsflow.io.manifest import config_hash


rule report:
    input:
        unpack(report_inputs),
    output:
        html=report(
            report_file("{model}", "{sft}", "summary.html"),
            category="{model} / {sft}",
            subcategory="Summary",
            caption="captions/summary.rst",
            labels={"model": "{model}", "sft": "{sft}", "figure": "summary"},
        ),
        md=report_file("{model}", "{sft}", "summary.md"),
        corr=report(
            report_file("{model}", "{sft}", "correlations.parquet"),
            category="{model} / {sft}",
            subcategory="Tables",
            caption="captions/correlations.rst",
            labels={"model": "{model}", "sft": "{sft}", "figure": "correlations"},
        ),
        comparison=report(
            report_file("{model}", "{sft}", "comparison.parquet"),
            category="{model} / {sft}",
            subcategory="Tables",
            caption="captions/comparison.rst",
            labels={"model": "{model}", "sft": "{sft}", "figure": "predictor panel"},
        ),
        forest=report(
            report_file("{model}", "{sft}", "forest.png"),
            category="{model} / {sft}",
            subcategory="Predictor panel",
            caption="captions/forest.rst",
            labels={"model": "{model}", "sft": "{sft}", "figure": "forest plot"},
        ),
        bars=report(
            report_file("{model}", "{sft}", "bars.png"),
            category="{model} / {sft}",
            subcategory="Summary",
            caption="captions/bars.rst",
            labels={"model": "{model}", "sft": "{sft}", "figure": "STS and Δ per domain"},
        ),
        plots=[
            report(
                report_file("{model}", "{sft}", f"scatter_{v}.png"),
                category="{model} / {sft}",
                subcategory="Scatter plots",
                caption="captions/scatter.rst",
                labels={"model": "{model}", "sft": "{sft}", "figure": v},
            )
            for v in STS_VARIANTS
        ],
    log:
        f"{R}/logs/report/{{model}}/{{sft}}.log",
    conda:
        "../envs/reduce.yaml"
    params:
        # the provenance block names the resolved config: any edit of it rewrites the report
        # (seconds), nothing upstream
        config_sha256=config_hash(CONFIG),
        observed=lambda w: [
            o for o in CONFIG["observed"] if o["model"] == w.model and o["sft"] == w.sft
        ],
        report=CONFIG["report"],
        # the domain that measures the SFT set's own task (the methods table)
        target=lambda w: SFTS[w.sft]["target"],
        # report.primary with its defaults resolved for this model (analysis.correlation)
        primary=lambda w: resolve_primary(
            CONFIG["report"]["primary"],
            MODELS[w.model]["layers"],
            (
                EVAL["metrics"]
                if runs(w.model, w.sft)
                else [
                    o["metric"]
                    for o in CONFIG["observed"]
                    if o["model"] == w.model and o["sft"] == w.sft
                ]
            ),
            STS["n_top"],
        ),
    script:
        "../workflow_scripts/report.py"


rule cards:
    """Feature cards of the top shifted dimensions of one seed's prediction and of the fine-tuning
    runs of that seed: contexts and frequencies from the plain shards, the logit lens from the
    model's LM head (no forward pass)."""
    input:
        unpack(cards_inputs),
    output:
        report(
            cards_file("{model}", "{layer}", "{sae}", "{sft}", "{seed}"),
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
        f"{R}/logs/cards/{{model}}/L{{layer}}/{{sae}}/{{sft}}/s{{seed}}.log",
    conda:
        "../envs/gpu.yaml"
    threads: model_threads
    resources:
        gpu=gpu_units,
        mem_mb=host_request("cards", 8000),
        gpu_mem_mb=gpu_request("cards"),
        runtime=runtime_request("cards", 30),
    params:
        model=model_spec,
        cards=CONFIG["cards"],
    script:
        "../workflow_scripts/cards.py"


rule manifest:
    """Reviewer's record of the run: resolved config, versions, identities, sha256 of outputs."""
    input:
        all_targets(),
    output:
        MANIFEST,
    log:
        f"{R}/logs/manifest.log",
    conda:
        "../envs/reduce.yaml"
    params:
        config=CONFIG,
    script:
        "../workflow_scripts/manifest.py"
