"""What ``snakemake`` builds by default: for every model and SFT set, the STS table and coverage,
the validation tables where tuned models exist, the feature cards, and the report where there is
an observed change to correlate with; for every model with two SFT sets or more, the analysis
across them (its tables and page)."""

from __future__ import annotations

from stsflow.mode import RunMethod


def validation_outputs(wf, model: str, sft: str) -> list[str]:
    if not wf.runs(model, sft):
        return []
    return [wf.layout.table(model, sft, name) for name in ("observed", "sts_oracle", "overlap")]


def all_targets(wf) -> list[str]:
    L = wf.layout
    out = []
    for model in wf.models:
        for sft in wf.sfts:
            out += [L.table(model, sft, "sts"), L.table(model, sft, "sts", "csv"),
                    L.table(model, sft, "coverage")]
            out += validation_outputs(wf, model, sft)
            # every data-mixture run's split: a run added to finished results gets its split
            # made (a checkpoint), after which Snakemake asks the aggregates again and they take
            # the new run in (a missing checkpoint input alone reruns no finished aggregate)
            out += [L.allocation_file(model, sft, m, s) for m, s in wf.runs(model, sft)
                    if RunMethod.parse(m).mix is not None]
            # the feature cards, with or without observed Δ (`stsflow cards` reads them)
            out += [L.cards_file(model, layer, sae, sft, seed)
                    for layer, sae in wf.sites(model) for seed in wf.seeds]
            if wf.has_observed(model, sft) or wf.runs(model, sft):
                out.append(L.report_file(model, sft, "summary.html"))
        out += matrix_outputs(wf, model)
    return out


def matrix_outputs(wf, model: str) -> list[str]:
    """The cross-SFT tables and page of a model, where there are candidates to compare."""
    if not wf.has_matrix:
        return []
    L = wf.layout
    return [*L.matrix_tables(model).values(), L.matrix_page(model)["html"]]
