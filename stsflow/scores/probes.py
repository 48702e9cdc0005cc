"""Linear probes as predictors (the paper's "probe on raw" and "probe on SAE" baselines).

Definition chosen here (the paper gives none): per domain, an L2-regularised logistic regression
separates the SFT set's queries (label 1) from the domain's queries (label 0), each query pooled
as the mean over its counted tokens of the residual (``probe_resid``) or of the SAE features
(``probe_sae``); features standardised on the training folds. The score is the mean out-of-fold
probability "SFT-like" of the domain's queries, over ``sts.probe_folds`` stratified folds drawn
with ``sts.control_seed``: a domain the probe cannot tell from the SFT data scores high.
The two classes are weighted equally (each sample by n / (2 n_class)), so the intercept does not
learn the class ratio: a domain indistinguishable from the SFT set scores 0.5 whatever the two
query counts (which follow the token budgets and query lengths, not the domains' similarity).
The regulariser is sklearn's default C = 1 (objective: weighted mean log-loss + ||w||² / (2 C n)).
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import minimize
from scipy.special import expit

from stsflow.features.panel import read_pooled
from stsflow.scores.registry import register_predictor

C = 1.0


def _objective(wb: np.ndarray, X: np.ndarray, y: np.ndarray, sw: np.ndarray, lam: float):
    w, b = wb[:-1], wb[-1]
    t = X @ w + b
    s = 2 * y - 1
    m = -s * t
    loss = np.sum(sw * np.logaddexp(0.0, m)) / len(y) + 0.5 * lam * (w @ w)
    g = -s * sw * expit(m) / len(y)
    return loss, np.concatenate([X.T @ g + lam * w, [g.sum()]])


def balanced_weights(y: np.ndarray) -> np.ndarray:
    """n / (2 n_class) per sample: both classes weigh the same in total."""
    y = np.asarray(y)
    n1, n0 = (y == 1).sum(), (y == 0).sum()
    return np.where(y == 1, len(y) / (2 * max(n1, 1)), len(y) / (2 * max(n0, 1)))


def fit_logistic(X: np.ndarray, y: np.ndarray, c: float = C, sample_weight=None
                 ) -> tuple[np.ndarray, float]:
    """(w, b) minimising the (weighted) mean log-loss + ||w||² / (2 c n), float64, L-BFGS."""
    X, y = np.asarray(X, dtype=np.float64), np.asarray(y, dtype=np.float64)
    sw = np.ones(len(y)) if sample_weight is None else np.asarray(sample_weight, float)
    lam = 1.0 / (c * len(y))
    res = minimize(_objective, np.zeros(X.shape[1] + 1), args=(X, y, sw, lam), jac=True,
                   method="L-BFGS-B", options={"maxiter": 1000, "gtol": 1e-8})
    return res.x[:-1], float(res.x[-1])


def stratified_folds(y: np.ndarray, k: int, seed: int) -> np.ndarray:
    """Fold index of every sample: each class shuffled with ``seed`` and dealt round-robin."""
    rng = np.random.default_rng(seed)
    fold = np.empty(len(y), dtype=np.int64)
    for cls in np.unique(y):
        idx = np.flatnonzero(y == cls)
        fold[rng.permutation(idx)] = np.arange(len(idx)) % k
    return fold


def probe_score(sft: np.ndarray, domain: np.ndarray, folds: int, seed: int) -> float:
    """Mean out-of-fold P(SFT) of the domain's pooled queries."""
    if len(domain) < folds or len(sft) < folds:
        return float("nan")
    X = np.vstack([sft, domain]).astype(np.float64)
    y = np.r_[np.ones(len(sft)), np.zeros(len(domain))]
    fold = stratified_folds(y, folds, seed)
    p = np.empty(len(y))
    for f in range(folds):
        tr, te = fold != f, fold == f
        mu, sd = X[tr].mean(0), X[tr].std(0)
        sd[sd == 0] = 1.0
        w, b = fit_logistic((X[tr] - mu) / sd, y[tr], sample_weight=balanced_weights(y[tr]))
        p[te] = expit((X[te] - mu) / sd @ w + b)
    return float(p[y == 0].mean())


def _pooled(x, space):
    if space == "resid":
        return read_pooled(x.sft_panel, "resid"), read_pooled(x.domain_panel, "resid")
    width = x.plain["sae"].width
    a, b = read_pooled(x.sft_panel, "sae", width), read_pooled(x.domain_panel, "sae", width)
    active = np.flatnonzero(np.asarray((a != 0).sum(0) + (b != 0).sum(0)).ravel())
    return a[:, active].toarray(), b[:, active].toarray()


for _space in ("resid", "sae"):
    register_predictor(f"probe_{_space}", family="probe", oracle=False, needs=("panel",),
                       about=f"mean out-of-fold P(SFT) of a logistic probe on pooled "
                             f"{'residual' if _space == 'resid' else 'SAE'} activations")(
        lambda x, _s=_space: probe_score(*_pooled(x, _s), x.probe_folds, x.control_seed))

