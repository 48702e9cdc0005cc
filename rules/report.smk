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
