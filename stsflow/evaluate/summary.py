"""Per-item evaluation rows reduced to one value per item and a summary per metric, and the
alignment of a base and a tuned run by question id."""

from __future__ import annotations

import numpy as np

from stsflow.evaluate.registry import metric_kind


def item_values(rows: list[dict], metric: str) -> np.ndarray:
    """Per-item values: 1.0/0.0 for correctness, or the per-item mean NLL."""
    if metric_kind(metric) == "accuracy":
        return np.array([1.0 if r["correct"] else 0.0 for r in rows], dtype=float)
    return np.array([r["nll"] for r in rows], dtype=float)


def accuracy_table(rows: list[dict], metric: str) -> dict:
    """Summary of evaluation rows. ``value``: accuracy in [0, 1] (higher is better) for
    "accuracy"/"generate"/"option_loglik"; for "nll" the mean over items of the per-item mean NLL
    (lower is better; ``value_token_weighted`` weights items by their token counts). For
    ``generate``, ``n_fallback`` counts answers found by a fallback rule, ``n_random_guess``
    unparsed answers scored as the seeded random guess and ``n_demos_dropped`` prompts that
    dropped demonstrations to fit the context. Deltas between models are always after − before."""
    kind = metric_kind(metric)
    hows = [r.get("how") for r in rows]
    out = {"metric": metric, "n_items": len(rows),
           "n_fallback": sum(h in ("fallback_answer", "fallback_last_letter") for h in hows),
           "n_random_guess": sum(h == "random_guess" for h in hows),
           "n_demos_dropped": sum(bool(r.get("demos_dropped")) for r in rows),
           "higher_is_better": kind == "accuracy"}
    vals = item_values(rows, metric)
    out["value"] = float(vals.mean()) if len(vals) else float("nan")
    if kind == "accuracy":
        out["n_correct"] = int(vals.sum())
    else:
        n = np.array([r["n_tokens"] for r in rows], dtype=float)
        out["value_token_weighted"] = float((vals * n).sum() / n.sum()) if n.sum() else float("nan")
        out["n_tokens"] = int(n.sum())
    return out


def paired_values(before_rows: list[dict], after_rows: list[dict], metric: str
                  ) -> tuple[np.ndarray, np.ndarray]:
    """Per-item values of the same items before and after, aligned by ``question_id``."""
    b = dict(zip([r["question_id"] for r in before_rows], item_values(before_rows, metric)))
    a = dict(zip([r["question_id"] for r in after_rows], item_values(after_rows, metric)))
    if set(a) != set(b) or len(a) != len(before_rows) or len(b) != len(after_rows):
        raise ValueError("before and after rows must cover the same, unique question_ids")
    keys = [r["question_id"] for r in before_rows]
    return np.array([b[k] for k in keys]), np.array([a[k] for k in keys])
