"""The SFT-vs-domain probes: the logistic fit against an independent Newton solver, the score's
independence of the two query counts, and its reach on separable data."""

from __future__ import annotations

import numpy as np
import pytest

from stsflow.scores import probes


def newton_logistic(X, y, sw, lam, iters=50):
    """Weighted L2 logistic regression by Newton's method (intercept unpenalised), float64."""
    A = np.hstack([X, np.ones((len(y), 1))])
    beta = np.zeros(A.shape[1])
    reg = np.full(A.shape[1], lam)
    reg[-1] = 0.0
    n = len(y)
    for _ in range(iters):
        p = 1 / (1 + np.exp(-A @ beta))
        grad = A.T @ (sw * (p - y)) / n + reg * beta
        hess = (A * (sw * p * (1 - p))[:, None]).T @ A / n + np.diag(reg)
        beta -= np.linalg.solve(hess, grad)
    return beta[:-1], beta[-1]


def test_fit_matches_an_independent_newton_solution():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(60, 4))
    y = (X @ [1.0, -0.5, 0.2, 0.0] + rng.normal(size=60) > 0.3).astype(float)
    sw = probes.balanced_weights(y)
    w, b = probes.fit_logistic(X, y, c=1.0, sample_weight=sw)
    w_ref, b_ref = newton_logistic(X, y, sw, lam=1.0 / 60)
    np.testing.assert_allclose(w, w_ref, rtol=1e-4, atol=1e-6)
    assert b == pytest.approx(b_ref, rel=1e-4, abs=1e-6)
    assert probes.balanced_weights(y)[y == 1].sum() == pytest.approx(30.0)


@pytest.mark.parametrize("n_domain", [20, 200, 400])
def test_indistinguishable_domain_scores_one_half_whatever_its_size(n_domain):
    rng = np.random.default_rng(n_domain)
    sft = rng.normal(size=(200, 5))
    domain = rng.normal(size=(n_domain, 5))
    assert probes.probe_score(sft, domain, folds=5, seed=0) == pytest.approx(0.5, abs=0.08)


def test_separable_domain_scores_near_zero_and_folds_are_seeded():
    rng = np.random.default_rng(1)
    sft = rng.normal(size=(50, 3))
    domain = rng.normal(size=(40, 3)) + [6.0, 0.0, 0.0]
    assert probes.probe_score(sft, domain, 5, 0) < 0.1  # regularised: never exactly 0
    y = np.r_[np.ones(50), np.zeros(40)]
    f0, f1 = probes.stratified_folds(y, 5, 0), probes.stratified_folds(y, 5, 0)
    assert np.array_equal(f0, f1) and not np.array_equal(f0, probes.stratified_folds(y, 5, 1))
    for f in range(5):  # stratified: each fold holds 10 SFT and 8 domain queries
        assert (y[f0 == f] == 1).sum() == 10 and (y[f0 == f] == 0).sum() == 8
