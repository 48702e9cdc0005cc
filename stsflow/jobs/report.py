"""Job of the report rule: correlate STS with observed accuracy changes (given in the config or
measured by the validation loop) and write the summary with its tables and plots. Torch-free."""

from __future__ import annotations

from pathlib import Path

from stsflow.config.settings import ReportSettings


def report(sts_path, config_rows: list[dict], outdir, *, title: str, settings: ReportSettings,
           provenance: dict, primary: dict | None = None, observed=None, sts_oracle=None,
           overlap=None, coverage=None, sae_dirs: dict | None = None,
           cards: list | None = None, histories: dict | None = None,
           target: str | None = None, scatter_for: list[str] = (),
           allocations: dict | None = None) -> None:
    """Correlate STS (and oracle STS) with observed changes: from the config (``config_rows``)
    and/or from this workflow's fine-tuning runs (``observed`` table). ``primary`` is the resolved
    pre-declared primary analysis (config.primary.resolve_primary); every other tested row
    is exploratory, Holm-adjusted within its family. ``histories``: "<method>-s<seed>" -> the
    fine-tuning run's history file; with ``target`` (the SFT set's own domain) they make the
    methods table (analysis.methods). ``allocations``: "<method>-s<seed>" -> each data-mixture
    run's allocation file (stsflow.mixture.allocation_file), also of a run that did not train,
    its data being another's: the allocation table, and that run's rows in the methods
    table."""
    import polars as pl

    from stsflow.analysis import correlation as st
    from stsflow.io.files import read_frame
    from stsflow.report.caveats import context_warnings, short_dn_warnings
    from stsflow.report.summary import write_report

    kw = dict(n_boot=settings.n_boot, n_perm=settings.n_perm, seed=settings.seed)
    sts_df = read_frame(sts_path)
    corr, obs_frames, sts_frames = [], [], [sts_df]
    if config_rows:
        given = pl.DataFrame(config_rows)
        obs_frames.append(given)
        corr.append(st.correlation_table(sts_df, given, **kw))
    if observed is not None:
        tuned = read_frame(observed)
        tuned = tuned.select(c for c in ("model", "sft", "method", "seed", "domain", "metric",
                                         "delta", "delta_se", "ci_low", "ci_high")
                             if c in tuned.columns)
        obs_frames.append(tuned)
        corr.append(st.correlation_table(sts_df, tuned, **kw))
        if sts_oracle is not None:
            oracle = read_frame(sts_oracle)
            sts_frames.append(oracle)
            corr.append(st.correlation_table(oracle, tuned, **kw))
    if not corr:
        raise ValueError("no observed accuracy changes: give observed: in the config or enable "
                         "finetune")
    extra = [("Overlap of predicted and true shifted dimensions |D_N ∩ D_N^true| / N, beside N / "
              "width, the dimensions each shift moved (n_moving_*), the size of the smaller D_N "
              "(n_effective: below N where fewer moved, never padded by index), the overlap "
              "expected by chance if D_N were a random set of its size among the predicted "
              "moving dimensions (hypergeometric), and the exact permutation p of that null "
              "(unadjusted); NaN with the reason where a shift is zero everywhere",
              read_frame(overlap))] if overlap is not None else []
    sae_warnings: list[str] = []
    warnings: list[str] = []  # the inputs' caveats (report.caveats)
    saes = None
    if sae_dirs:
        saes, sae_warnings = sae_quality_table(sae_dirs)
        extra.insert(0, ("SAE quality on held-out tokens of this model (L0; dead fraction: the "
                         "share of features active on none of the held-out tokens; fraction of "
                         "variance explained; next-token loss recovered with the SAE spliced in)",
                         saes))
        provenance = dict(provenance, sae_warnings=sae_warnings or "none")
    if coverage is not None:
        cover = read_frame(coverage)
        warnings += context_warnings(cover)
        extra.append(("Coverage: queries used and cut by max_length per corpus and extraction "
                      "run, and those beyond the model's context with their prefix "
                      "(sts.context_check: warn; the model then runs past its trained positions); "
                      "SFT answers cut by finetune.max_length (fine-tuning)",
                      cover.drop("model", "sft")))
    corr = pl.concat(corr, how="diagonal_relaxed")
    keys = ["model", "sft", "layer", "sae", "n_top", "predictor", "target", "protocol", "metric",
            "method", "seed"]
    corr = corr.select([c for c in keys if c in corr.columns] + list(st.STAT_COLUMNS)
                       + list(st.ROW_COLUMNS))
    corr = st.assign_roles(corr, primary)
    sts_all = pl.concat(sts_frames, how="diagonal_relaxed")
    warnings += short_dn_warnings(sts_all)
    obs_all = pl.concat(obs_frames, how="diagonal_relaxed")
    from stsflow.analysis.comparison import ablation_table, comparison_table

    comparison = (comparison_table(corr, sts_all, obs_all, primary, n_boot=settings.n_boot,
                                   seed=settings.seed) if primary else None)
    methods = allocation_rows = None
    if observed is not None and histories:
        from stsflow.analysis.allocations import allocation_table, trained_as
        from stsflow.analysis.methods import method_table
        from stsflow.io.files import read_metadata
        from stsflow.mixture.allocation_file import read_allocation
        from stsflow.mode import Shift

        runs = {}
        for name, path in histories.items():
            shift = Shift.parse(f"true-{name}")
            runs[(shift.method, shift.seed)] = read_metadata(path)
        for path in (allocations or {}).values():  # what the fine-tuning job records, and more
            info = read_allocation(path)
            key = (info["method"], int(info["seed"]))
            runs[key] = dict(runs.get(key, {}), mixture={
                k: v for k, v in info.items() if k not in ("method", "seed", "domains")})
        methods = method_table(tuned, runs, target, same=trained_as(runs))
        allocation_rows = allocation_table(runs)
    by_run = None
    if observed is not None and sts_oracle is not None:
        from stsflow.analysis.methods import prediction_by_run

        by_run = prediction_by_run(corr, read_frame(overlap) if overlap else None, primary)
    card_df = (pl.concat([read_frame(p) for p in cards], how="diagonal_relaxed")
               if cards else None)
    write_report(corr, sts_all, obs_all, Path(outdir), title=title,
                 provenance=provenance, primary=primary, extra_tables=extra,
                 warnings=[f"SAE {w}" for w in sae_warnings] + warnings, comparison=comparison,
                 ablation=ablation_table(corr, primary, saes) if primary else None,
                 cards=card_df, methods=methods, scatter_for=scatter_for, by_run=by_run,
                 allocations=allocation_rows)


def run_provenance(*, model_dir=None, data: dict | None = None, sae_dirs: dict | None = None,
                   cards: list | None = None, config_sha256: str | None = None) -> dict:
    """What a reader needs to reproduce the report: the model's and every SAE's identity, each
    dataset's source (hub revision, builtin name or local file) and sample, the package versions
    of this job and of the model jobs (read from a cards file), and the sha256 of the resolved
    config as far as this model and SFT set are concerned (stsflow.workflow.params.report_config
    recomputes it from the config the manifest holds)."""
    from stsflow.io.files import package_versions, read_json, read_metadata
    from stsflow.jobs.common import model_identity, sae_identity
    from stsflow.sae.info import read_info

    out: dict = {}
    if model_dir is not None:  # the prepared model's manifest (models.load, which needs torch)
        info = read_json(Path(model_dir) / "stsflow_model.json")
        out["model identity"] = model_identity(info)
    for (layer, name), path in sorted((sae_dirs or {}).items()):
        info = read_info(path)
        out[f"SAE L{layer}/{name}"] = sae_identity(info)
    for name, path in (data or {}).items():
        meta = read_metadata(path)
        out[f"data {name}"] = {k: meta[k] for k in ("source", "n_records", "sample") if k in meta}
    out["versions (report)"] = package_versions()
    if cards:
        out["versions (model jobs)"] = read_metadata(cards[0]).get("packages")
    if config_sha256:
        out["config sha256"] = config_sha256
    return out


def sae_quality_table(sae_dirs: dict):
    """(table, warnings): one row per SAE (``sae_dirs`` maps (layer, name) -> prepared SAE) with
    its identity, width, k (TopK SAEs) and quality figures, and every warning of its preparation
    (poor figures, declared model, accepted hook) as text."""
    import polars as pl

    from stsflow.sae.info import quality_summary

    rows, warnings = [], []
    for (layer, name), path in sorted(sae_dirs.items()):
        q = quality_summary(path)
        ident = {"registry": lambda: f"{q['release']}/{q['sae_id']}",
                 "hub": lambda: f"{q['repo']}/{q['repo_path']}@{q['revision'][:12]}",
                 "local": lambda: q.get("path")}.get(q.get("kind"), lambda: "trained here")()
        rows.append({"layer": int(layer), "sae": name, "source": ident,
                     "hook": q.get("hook_name"), "width": q.get("width"), "k": q.get("k"),
                     "l0": q.get("l0"), "dead_fraction": q.get("dead_fraction"),
                     "variance_explained": q.get("fraction_variance_explained"),
                     "loss_recovered": q.get("loss_recovered"), "ce_clean": q.get("ce_clean"),
                     "ce_with_sae": q.get("ce_with_sae"),
                     "ce_zero_ablation": q.get("ce_zero_ablation"),
                     "eval_tokens": q.get("eval_tokens"),
                     "warnings": "; ".join(w["kind"] for w in q["warnings"]) or "none"})
        warnings += [f"L{layer}/{name}: {w['message']}" for w in q["warnings"]]
    return pl.DataFrame(rows), warnings
