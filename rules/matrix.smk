# The analysis across a model's candidate SFT sets (two or more under sft:): the predicted and
# observed transfer matrices, the decision table and the pooled validity, read from the per-SFT
# tables. One local job per model; the per-SFT rules do not depend on it.


rule matrix:
    """Which SFT set to train on: the matrix SFT set × domain of every predictor (and of every
    fine-tuning run where one ran), the decision table, the pooled correlation and the page with
    the heatmaps (stsflow.jobs.matrix)."""
    input:
        unpack(INPUTS.matrix),
    output:
        **{
            name: report(
                path,
                category="{model} / across SFT sets",
                subcategory="Tables",
                caption="captions/matrix_tables.rst",
                labels={"model": "{model}", "figure": name},
            )
            for name, path in L.matrix_tables("{model}").items()
        },
        html=report(
            L.matrix_page("{model}")["html"],
            category="{model} / across SFT sets",
            subcategory="Summary",
            caption="captions/matrix.rst",
            labels={"model": "{model}", "figure": "summary"},
        ),
        md=L.matrix_page("{model}")["md"],
        heatmaps=report(
            L.matrix_page("{model}")["heatmaps"],
            category="{model} / across SFT sets",
            subcategory="Summary",
            caption="captions/matrix.rst",
            labels={"model": "{model}", "figure": "heatmaps"},
        ),
    log:
        L.log("matrix", "{model}"),
    localrule: True
    conda:
        "../envs/reduce.yaml"
    params:
        matrix=PARAMS.matrix,
        given=PARAMS.matrix_given,
    script:
        "../workflow_scripts/matrix.py"
