# Correlation of STS with observed accuracy changes: tables, plots, Markdown and HTML.

from stsflow.analysis.correlation import resolve_primary


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
        observed=lambda w: [
            o for o in CONFIG["observed"] if o["model"] == w.model and o["sft"] == w.sft
        ],
        report=CONFIG["report"],
        # report.primary with its defaults resolved for this model (analysis.correlation)
        primary=lambda w: resolve_primary(
            CONFIG["report"]["primary"],
            MODELS[w.model]["layers"],
            (
                EVAL["metrics"]
                if FT["enabled"]
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
