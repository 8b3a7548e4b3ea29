"""ITQ-CCA (Gong & Lazebnik 2011): canonical directions of the labels, then ITQ's rotation."""
from __future__ import annotations

import numpy as np
import pytest

from hashbench.errors import HashbenchError
from hashbench.methods.itq import ITQ
from hashbench.methods.itq_cca import ITQCCA


def _buried_signal(seed=0, n=1700, n_classes=8, signal_dims=3, noise_dims=37):
    """Classes are tight clusters in a 3-D subspace; 37 noise dimensions of 3x larger spread
    dominate the variance, and a random rotation mixes signal and noise in every feature."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(n_classes, signal_dims))
    y = rng.integers(0, n_classes, n)
    signal = centres[y] + 0.15 * rng.normal(size=(n, signal_dims))
    X = np.hstack([signal, 3.0 * rng.normal(size=(n, noise_dims))])
    rotation, _ = np.linalg.qr(rng.normal(size=(X.shape[1], X.shape[1])))
    return X @ rotation, y


def test_beats_unsupervised_itq_when_labels_live_in_a_buried_subspace(brute_force_map):
    X, y = _buried_signal()
    Xq, yq, Xd, yd = X[:200], y[:200], X[200:], y[200:]
    supervised = ITQCCA(6, random_state=0).fit(Xd, yd)
    unsupervised = ITQ(6, random_state=0).fit(Xd)
    map_cca = brute_force_map(supervised.encode(Xq), supervised.encode(Xd), yq, yd)
    map_itq = brute_force_map(unsupervised.encode(Xq), unsupervised.encode(Xd), yq, yd)
    assert map_cca > map_itq + 0.3, (map_cca, map_itq)


def test_canonical_directions_oracle():
    """Oracle by regression: for each unscaled direction w_k, the multiple correlation of X w_k
    with the labels (least squares on Y) is rho_k (up to the 1e-4 ridge); the canonical variates
    are uncorrelated with unit variance."""
    X, y = _buried_signal(seed=1, n=800)
    Y = np.eye(8)[y]
    model = ITQCCA(5, random_state=0).fit(X, Y)
    W = model.embedding_ / model.correlations_
    Z = (X - X.mean(0)) @ W
    # w^T (Cxx + reg I) w = 1 and distinct variates uncorrelated: exactly, ridge included
    np.testing.assert_allclose(np.cov(Z.T) + model.reg * W.T @ W, np.eye(5), atol=1e-8)
    Yc = Y - Y.mean(0)
    for k in range(5):
        coef, *_ = np.linalg.lstsq(Yc, Z[:, k], rcond=None)
        multiple_r = np.corrcoef(Yc @ coef, Z[:, k])[0, 1]
        assert multiple_r == pytest.approx(model.correlations_[k], abs=1e-3)
    assert np.all(np.diff(model.correlations_) <= 1e-12)
    assert model.correlations_[0] > 0.9


def test_multi_hot_labels_are_accepted():
    X, y = _buried_signal(seed=2, n=600)
    Y = np.eye(8)[y]
    Y[:, 0] = 1    # a label every item carries adds nothing: rank of centred labels stays 7
    model = ITQCCA(9, random_state=0).fit(X, Y)
    assert model.n_canonical_ == 7


def test_more_bits_than_canonical_directions():
    """One-hot labels of 8 classes give 7 canonical directions: raise, or pad with residual PCA."""
    X, y = _buried_signal(seed=3, n=600)
    with pytest.raises(HashbenchError, match="7 canonical directions"):
        ITQCCA(12, fill="raise").fit(X, y)
    model = ITQCCA(12, random_state=0).fit(X, y)
    assert model.n_canonical_ == 7 and model.embedding_.shape == (40, 12)
    padding = model.embedding_[:, 7:]
    canonical = model.embedding_[:, :7]
    # padding directions: orthogonal to the canonical span, variance of the weakest canonical one
    q, _ = np.linalg.qr(canonical)
    np.testing.assert_allclose(q.T @ padding, 0.0, atol=1e-10)
    variance = np.var((X - X.mean(0)) @ padding, axis=0, ddof=1)
    np.testing.assert_allclose(variance, model.correlations_[-1] ** 2, rtol=1e-8)
    assert model.encode(X).shape == (600, 12)


def test_refuses_bad_parameters():
    X, y = _buried_signal(n=100)
    with pytest.raises(HashbenchError, match="fill"):
        ITQCCA(4, fill="zeros").fit(X, y)
    with pytest.raises(HashbenchError, match="reg"):
        ITQCCA(4, reg=0).fit(X, y)
