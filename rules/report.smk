# Correlation of STS with observed accuracy changes: tables, plots, Markdown and HTML.


rule report:
    input:
        sts=f"{R}/tables/{{model}}/{{sft}}/sts.parquet",
    output:
        html=f"{R}/reports/{{model}}/{{sft}}/summary.html",
        md=f"{R}/reports/{{model}}/{{sft}}/summary.md",
        corr=f"{R}/reports/{{model}}/{{sft}}/correlations.parquet",
    params:
        observed=lambda w: [o for o in CONFIG["observed"] if o["model"] == w.model and o["sft"] == w.sft],
        report=CONFIG["report"],
    log:
        f"{R}/logs/report/{{model}}/{{sft}}.log",
    script:
        "../workflow_scripts/report.py"


rule manifest:
    """Reviewer's record of the run: resolved config, versions, identities, sha256 of outputs."""
    input:
        all_targets(),
    output:
        f"{R}/manifest.json",
    params:
        config=CONFIG,
    log:
        f"{R}/logs/manifest.log",
    script:
        "../workflow_scripts/manifest.py"
