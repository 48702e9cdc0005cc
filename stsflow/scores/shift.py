"""Shift vectors (the per-dimension mean squared feature change on the SFT queries), their top-N
dimensions D_N, and the overlap of a predicted and a true D_N with its chance level.

**D_N holds only dimensions that moved, and never a tie broken by index.** A dimension whose
shift is exactly zero did not move, so it is no "shifted dimension" whatever N asks for; and of
dimensions whose shifts tie at the cut, none has a better claim than the other. D_N is therefore
the set of dimensions j with shift_j > 0 and at most N dimensions with a shift ≥ shift_j: the N
largest where they are unambiguous, fewer (``n_effective``, recorded beside every score and
overlap) where fewer than N dimensions moved or a tie straddles the N-th place. Padding D_N with
zero-shift dimensions by index, as a plain sort would, adds dimensions chosen by their number: an
STS_act then sums the domain's activity of arbitrary features. (The shift table's ``rank`` still
orders every dimension, ties by the lower index, for displays and for selective fine-tuning's
fixed budget of K maps, ``top_dims``.)

**Overlap and its chance level.** |D_N ∩ D_N^true| / N is compared with what a prediction that
knew only *which* dimensions its ICL run moves would score: under the null, D_N is a uniformly
random set of its size among the M_p dimensions with a non-zero predicted shift, independently
of the true shift. The overlap count then follows the hypergeometric distribution with
population M_p, successes |D_N^true ∩ M_p| (the true top dimensions the prediction could have
picked) and draws |D_N|; ``overlap_chance`` is its mean over N and ``overlap_p`` its upper tail
P(X ≥ observed), which is the exact permutation p of shuffling the predicted shift among the
moving dimensions (every permutation is enumerated by the distribution; no Monte Carlo). Why
among the moving dimensions and not the whole width: on a mostly dead or narrow-firing SAE the
whole-width chance level (N / width, given beside it) is tiny, and a prediction that merely
picks live dimensions would look far better than chance; within the moving dimensions the test
asks whether the *ranking* finds the true top-N. The p is unadjusted (one per row of the
diagnostic table). A true shift that is exactly zero (the tuned model equals the base on these
queries: an identity pair) has no top-N, and its overlap is NaN with the reason, as is one of a
predicted shift that is zero everywhere."""

from __future__ import annotations

import math

import numpy as np
import pyarrow as pa

from stsflow.features.stats import Stats


def shift_table(paired: Stats) -> pa.Table:
    """Shift vector of an ICL-vs-plain (or tuned-vs-base) pairing: ``dim, shift, mean_diff,
    rank`` with rank 1 = largest shift; ties broken by the lower dimension index."""
    if paired.diff_sumsq is None:
        raise ValueError("statistics have no paired differences (not an ICL or tuned run)")
    n = max(paired.n_tokens, 1)
    return ranked(paired.diff_sumsq / n, paired.diff_sum / n)


def ranked(shift: np.ndarray, mean_diff: np.ndarray) -> pa.Table:
    """The shift table of per-dimension ``shift`` and ``mean_diff``: rank 1 = largest shift,
    ties broken by the lower dimension index."""
    order = np.lexsort((np.arange(len(shift)), -shift))
    rank = np.empty(len(shift), dtype=np.int32)
    rank[order] = np.arange(1, len(shift) + 1, dtype=np.int32)
    return pa.table({"dim": np.arange(len(shift), dtype=np.int32), "shift": shift,
                     "mean_diff": mean_diff, "rank": rank})


def top_dims(shift: pa.Table, n_top: int) -> np.ndarray:
    """The dimensions of rank 1..N, every one of them, ties and zero shifts ordered by index:
    a fixed-size set (selective fine-tuning's K maps). D_N itself is ``shifted_dims``."""
    rank = shift["rank"].to_numpy()
    if n_top > len(rank):
        raise ValueError(f"n_top={n_top} exceeds the SAE width {len(rank)}")
    return np.sort(shift["dim"].to_numpy()[rank <= n_top])


def shifted_dims(shift: pa.Table, n_top: int) -> np.ndarray:
    """D_N (sorted): the dimensions j with shift_j > 0 and at most N dimensions whose shift is
    ≥ shift_j. Fewer than N where fewer moved or a tie straddles the cut (module text)."""
    values = shift["shift"].to_numpy().astype(np.float64)
    dims = shift["dim"].to_numpy()
    asc = np.sort(values)
    at_least = len(values) - np.searchsorted(asc, values, side="left")
    return np.sort(dims[(values > 0) & (at_least <= n_top)]).astype(np.int64)


def moving(shift: pa.Table) -> np.ndarray:
    """The dimensions with a non-zero shift (sorted)."""
    return np.sort(shift["dim"].to_numpy()[shift["shift"].to_numpy() > 0]).astype(np.int64)


OVERLAP_COLUMNS = ("width", "n_over_width", "n_moving_predicted", "n_moving_true",
                   "n_effective", "overlap", "overlap_chance", "overlap_p", "overlap_note")


def overlap_stats(predicted: pa.Table, true: pa.Table, n_top: int) -> dict:
    """|D_N ∩ D_N^true| / N with its chance level and exact permutation p among the predicted
    moving dimensions (module text), N / width, the moving dimensions of each shift and
    ``n_effective``, the size of the smaller D_N; ``overlap_note`` says why the overlap is NaN
    or which D_N holds fewer than N dimensions (None when neither)."""
    from scipy.stats import hypergeom

    width = predicted.num_rows
    if true.num_rows != width:
        raise ValueError(f"the predicted and true shifts have different widths ({width} vs "
                         f"{true.num_rows}): not the same SAE")
    m_p, m_t = moving(predicted), moving(true)
    pred, tru = shifted_dims(predicted, n_top), shifted_dims(true, n_top)
    out = {"width": width, "n_over_width": n_top / width, "n_moving_predicted": len(m_p),
           "n_moving_true": len(m_t), "n_effective": min(len(pred), len(tru)),
           "overlap": math.nan, "overlap_chance": math.nan, "overlap_p": math.nan,
           "overlap_note": None}
    if not len(m_t):
        out["overlap_note"] = ("the true shift is exactly zero (the tuned model equals the base "
                               "on these queries: an identity pair?): no dimension moved, so "
                               "D_N^true is undefined")
        return out
    if not len(m_p):
        out["overlap_note"] = "the predicted shift is exactly zero: D_N is undefined"
        return out
    hits = len(np.intersect1d(pred, tru))
    could = len(np.intersect1d(tru, m_p))  # true top dimensions the prediction could pick
    out.update(overlap=hits / n_top,
               overlap_chance=len(pred) * could / len(m_p) / n_top,
               overlap_p=float(hypergeom.sf(hits - 1, len(m_p), could, len(pred))))
    short = [f"{what} D_N holds {len(d)} (of N = {n_top}: {len(m)} dimensions moved"
             + (", a tie at the cut" if len(d) < min(n_top, len(m)) else "") + ")"
             for what, d, m in (("predicted", pred, m_p), ("true", tru, m_t)) if len(d) < n_top]
    if short:
        out["overlap_note"] = "; ".join(short)
    return out


def overlap(predicted: pa.Table, true: pa.Table, n_top: int) -> float:
    """|D_N ∩ D_N^true| / N (NaN where a shift is zero everywhere: ``overlap_stats``)."""
    return overlap_stats(predicted, true, n_top)["overlap"]
