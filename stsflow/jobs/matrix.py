"""Job of the cross-SFT analysis of one model: read the per-SFT STS and observed tables, write the
matrix tables and the cross-SFT report page. Adapts files to ``analysis.matrix``, ``decision``
and ``pooled`` and ``report.matrix``; torch-free."""

from __future__ import annotations

from pathlib import Path

# the tables this job writes (results/tables/<model>/matrix/<name>.parquet)
TABLES = ("predicted", "observed", "decision", "agreement", "agreement_summary", "at_risk",
          "normalisations", "normalisation_summary", "pooled")


def matrix(model: str, sts: dict[str, str], observed: dict[str, str], tables: dict[str, str],
           report_dir, *, primary: dict, sfts: list[str], domains: list[str],
           targets: dict[str, str | None], config_rows: list[dict] = (), top_k: int = 3,
           n_boot: int = 2000, n_perm: int = 10000, seed: int = 0, ci: float = 0.95) -> None:
    """``sts``: SFT set → its STS table; ``observed``: SFT set → its observed table (only the
    SFT sets with tuned models; none: prediction only); ``config_rows``: Δ given in the config
    (model, sft, domain, metric, delta); ``tables``: name (``TABLES``) → output path;
    ``primary``: ``analysis.matrix.resolve_matrix_primary``; ``sfts`` and ``domains``: the
    shared order; ``targets``: SFT set → sft.<name>.target. Each metric's direction (for a
    signed target) is the evaluation registry's (``metric_directions``)."""
    import polars as pl

    from stsflow.analysis import decision as dec
    from stsflow.analysis import matrix as mx
    from stsflow.analysis.pooled import pooled_table
    from stsflow.io.files import read_frame, write_parquet
    from stsflow.report import matrix as page

    missing = sorted(set(TABLES) - set(tables))
    if missing:
        raise ValueError(f"matrix job: no output path for table(s) {missing}")
    absent = [s for s in sfts if s not in sts]
    if absent:
        raise ValueError(f"matrix job: no STS table for SFT set(s) {absent}")
    sts_frames = [read_frame(sts[s]).filter(pl.col("model") == model) for s in sfts]
    pred = mx.predicted_matrix(sts_frames, primary, sfts=sfts, domains=domains, targets=targets)
    obs_frames = [read_frame(observed[s]) for s in sfts if s in observed]
    if config_rows:
        obs_frames.append(pl.DataFrame(list(config_rows)).filter(pl.col("model") == model))
    obs = mx.observed_matrix(obs_frames, sfts=sfts, domains=domains, targets=targets)
    directions = metric_directions(obs["metric"].unique().to_list())
    decision = dec.decision_table(pred, obs, primary, directions=directions)
    agreement = dec.domain_agreement(decision, seed=seed)
    summary = dec.agreement_summary(decision, agreement, ci=ci, seed=seed)
    at_risk = dec.most_at_risk(pred, primary, top_k)
    rankings, norm_summary = dec.normalisation_comparison(pred, obs, primary,
                                                          directions=directions, ci=ci,
                                                          seed=seed)
    pooled = pooled_table(pred, obs, primary, directions=directions, n_boot=n_boot,
                          n_perm=n_perm, seed=seed, ci=ci)
    frames = {"predicted": pred, "observed": obs, "decision": decision, "agreement": agreement,
              "agreement_summary": summary, "at_risk": at_risk, "normalisations": rankings,
              "normalisation_summary": norm_summary, "pooled": pooled}
    meta = {"model": model, "primary": primary, "sfts": list(sfts), "domains": list(domains)}
    for name, df in frames.items():
        write_parquet(df.to_arrow(), tables[name], meta)
    blocks = page.matrix_blocks(primary=primary, decision=decision, agreement=agreement,
                                summary=summary, at_risk=at_risk, rankings=rankings,
                                norm_summary=norm_summary, pooled=pooled, model=model, ci=ci)
    page.write_matrix_report(Path(report_dir), blocks,
                             page.heatmap_png(pred, obs, primary, directions=directions),
                             title=f"{model}: the transfer matrix across SFT sets")


def metric_directions(metrics) -> dict[str, bool]:
    """metric → higher_is_better, for the metrics whose direction the evaluation registry knows
    (stsflow.evaluate.registry, torch-free); a Δ given under another name has none, and a signed
    target on it is refused (analysis.matrix.harm)."""
    from stsflow.evaluate.registry import higher_is_better

    found = {m: higher_is_better(m) for m in metrics}
    return {m: d for m, d in found.items() if d is not None}
