"""KSH (Liu, Wang, Ji, Jiang & Chang 2012) against properties stated in the paper.

Checked, mostly on 4 classes that are unions of 3 Gaussian clusters each (not linearly separable):
1. The kernel features are the paper's: zero-mean (on the training set) Gaussian RBF values
   against anchors drawn from the training set, bandwidth sigma^2 = mean squared sample-to-anchor
   distance, as in the authors' released code (recomputed with a plain loop).
2. The smoothed objective's gradient is right (finite differences).
3. Greedy fitting (on 10 one-cluster classes): bit k minimises ``||R_{k-1} - b b^T||_F`` for the
   residue ``R_k = K S - sum_{j<=k} b_j b_j^T``, and here every bit does shrink the residue.
4. The code inner products on the labelled training pairs fit ``K * S`` (the paper's objective
   ``||B B^T - K S||_F^2``) far better than random projections of the same kernel features
   (kernelised LSH), and the first bit beats 300 random directions on ``b^T (K S) b``.
5. Hamming ranking separates the classes on held-out queries: mAP > 0.9, well above kernelised
   LSH and above linear supervised hashing (ITQ-CCA), which cannot separate these classes.
"""
from __future__ import annotations

import numpy as np
import pytest
import scipy.optimize

from hashbench.errors import HashbenchError
from hashbench.linalg import sign_bits
from hashbench.methods.itq_cca import ITQCCA
from hashbench.methods.ksh import KSH, Residue, smooth_objective

N_BITS = 16


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    n, d, n_classes, per_class = 1400, 10, 4, 3
    centres = rng.normal(size=(n_classes * per_class, d)) * 2.0
    component = rng.integers(0, n_classes * per_class, n)
    y = component % n_classes
    X = centres[component] + 0.7 * rng.normal(size=(n, d))
    return X[:200], y[:200], X[200:], y[200:]


@pytest.fixture(scope="module")
def ksh(data):
    _, _, Xd, yd = data
    return KSH(N_BITS, n_anchors=100, n_labeled=500, random_state=0).fit(Xd, yd)


def test_kernel_features_as_in_the_paper(data, ksh):
    _, _, Xd, _ = data
    assert ksh.anchors_.shape == (100, 10) and len(ksh.labeled_index_) == 500
    rows = {tuple(r) for r in Xd}
    assert all(tuple(a) in rows for a in ksh.anchors_)
    total = 0.0
    for x in Xd:
        for a in ksh.anchors_:
            total += np.sum((x - a) ** 2)
    assert ksh.sigma_ ** 2 == pytest.approx(total / (len(Xd) * len(ksh.anchors_)), rel=1e-10)
    features = ksh.kernel_features(Xd)
    np.testing.assert_allclose(features.mean(0), 0.0, atol=1e-12)
    x, a = Xd[3], ksh.anchors_[7]
    expected = np.exp(-np.sum((x - a) ** 2) / (2 * ksh.sigma_ ** 2)) - ksh.kernel_mean_[7]
    assert features[3, 7] == pytest.approx(expected, rel=1e-10)


def test_smooth_objective_gradient():
    rng = np.random.default_rng(1)
    K = rng.normal(size=(40, 12))
    S = np.where(rng.integers(0, 3, 40)[:, None] == rng.integers(0, 3, 40)[None, :], 1.0, -1.0)
    R = S + S.T
    a = rng.normal(size=12) * 0.3
    error = scipy.optimize.check_grad(lambda v: smooth_objective(v, K, R)[0],
                                      lambda v: smooth_objective(v, K, R)[1], a)
    assert error < 1e-6 * max(1.0, np.linalg.norm(smooth_objective(a, K, R)[1]))


@pytest.mark.parametrize("n_labels", [1, 5])  # single-label (10 distinct) and multi-hot label vectors
def test_residue_operator_equals_the_dense_residue(n_labels):
    rng = np.random.default_rng(3)
    l, n_bits = 60, 8
    Y = (rng.random((l, 10)) < 0.15 * n_labels).astype(np.uint8) if n_labels > 1 else \
        np.eye(10, dtype=np.uint8)[rng.integers(0, 10, l)]
    R, dense = Residue(Y, n_bits), n_bits * np.where(Y @ Y.T.astype(float) > 0, 1.0, -1.0)
    K, v = rng.normal(size=(l, 7)), rng.normal(size=l)
    for _ in range(3):
        np.testing.assert_allclose(R @ v, dense @ v, rtol=1e-12, atol=1e-10)
        np.testing.assert_allclose(R.project(K), K.T @ dense @ K, rtol=1e-12, atol=1e-9)
        b = np.where(rng.random(l) < 0.5, 1.0, -1.0)
        R.subtract(b)
        dense -= np.outer(b, b)
    assert R.n_groups == len(np.unique(Y, axis=0))


def _pair_targets(ksh, yd):
    labels = yd[ksh.labeled_index_]
    return N_BITS * np.where(labels[:, None] == labels[None, :], 1.0, -1.0)


def test_codes_fit_pairwise_labels_better_than_kernel_lsh(data, ksh):
    _, _, Xd, yd = data
    target = _pair_targets(ksh, yd)
    features = ksh.kernel_features(Xd[ksh.labeled_index_])

    def misfit(codes):
        B = 2.0 * codes - 1.0
        return np.sum((B @ B.T - target) ** 2)

    ksh_misfit = misfit(ksh.encode(Xd[ksh.labeled_index_]))
    rng = np.random.default_rng(2)
    lsh_misfits = [misfit(sign_bits(features @ rng.normal(size=(features.shape[1], N_BITS))))
                   for _ in range(5)]
    assert ksh_misfit < 0.6 * min(lsh_misfits), (ksh_misfit, lsh_misfits)

    b = 2.0 * ksh.encode(Xd[ksh.labeled_index_])[:, 0] - 1.0
    first_bit = b @ target @ b
    for _ in range(300):
        r = np.where(features @ rng.normal(size=features.shape[1]) > 0, 1.0, -1.0)
        assert first_bit >= r @ target @ r


def test_every_greedy_bit_shrinks_the_residue():
    """The paper's greedy scheme fits bit k to the residue R_{k-1} (R_0 = K S,
    R_k = R_{k-1} - b_k b_k^T); on well-separated classes every bit then lowers ||R_k||_F,
    i.e. b_k^T R_{k-1} b_k > l^2 / 2 (recomputed here from the training codes)."""
    rng = np.random.default_rng(5)
    centres = rng.normal(size=(10, 10)) * 2.0
    y = rng.integers(0, 10, 800)
    X = centres[y] + 0.5 * rng.normal(size=(800, 10))
    model = KSH(8, n_anchors=100, n_labeled=400, random_state=0).fit(X, y)
    labels = y[model.labeled_index_]
    B = 2.0 * model.encode(X[model.labeled_index_]) - 1.0
    residue = 8 * np.where(labels[:, None] == labels[None, :], 1.0, -1.0)
    norms = [np.linalg.norm(residue)]
    for b in B.T:
        residue = residue - np.outer(b, b)
        norms.append(np.linalg.norm(residue))
    assert np.all(np.diff(norms) < 0), norms


def test_hamming_ranking_separates_classes(data, ksh, brute_force_map):
    Xq, yq, Xd, yd = data
    map_ksh = brute_force_map(ksh.encode(Xq), ksh.encode(Xd), yq, yd)
    A = np.random.default_rng(3).normal(size=(len(ksh.anchors_), N_BITS))
    map_lsh = brute_force_map(sign_bits(ksh.kernel_features(Xq) @ A),
                              sign_bits(ksh.kernel_features(Xd) @ A), yq, yd)
    linear = ITQCCA(3, random_state=0).fit(Xd, yd)
    map_linear = brute_force_map(linear.encode(Xq), linear.encode(Xd), yq, yd)
    assert map_ksh > 0.9
    assert map_ksh > map_lsh + 0.2, (map_ksh, map_lsh)
    assert map_ksh > map_linear + 0.1, (map_ksh, map_linear)


def test_multi_hot_labels_and_small_training_sets():
    """Pairs sharing any label are similar; fewer samples than anchors/labelled: all are used."""
    rng = np.random.default_rng(4)
    Y = (rng.random((60, 5)) < 0.3).astype(int)
    X = Y @ rng.normal(size=(5, 8)) + 0.1 * rng.normal(size=(60, 8))
    model = KSH(4, random_state=0).fit(X, Y)
    assert len(model.anchors_) == 60 and len(model.labeled_index_) == 60
    assert model.encode(X).shape == (60, 4)


def test_refuses_bad_parameters():
    X, y = np.random.default_rng(0).normal(size=(30, 4)), np.arange(30) % 2
    with pytest.raises(HashbenchError, match="n_anchors"):
        KSH(4, n_anchors=0).fit(X, y)
    with pytest.raises(HashbenchError, match="max_iter"):
        KSH(4, max_iter=2.5).fit(X, y)


def test_fit_with_and_without_kept_distances_agree(monkeypatch):
    """Large training sets recompute the squared distances in block passes instead of keeping them."""
    import hashbench.methods.ksh as ksh_module

    rng = np.random.default_rng(7)
    X, y = rng.normal(size=(300, 12)), rng.integers(0, 5, 300)
    kept = KSH(8, n_anchors=40, n_labeled=120, random_state=0).fit(X, y)
    monkeypatch.setattr(ksh_module, "_KEEP_BYTES", 0)
    monkeypatch.setattr(ksh_module, "_CHUNK", 64)  # several blocks
    blocks = KSH(8, n_anchors=40, n_labeled=120, random_state=0).fit(X, y)
    assert blocks.sigma_ == pytest.approx(kept.sigma_, rel=1e-12)
    np.testing.assert_allclose(blocks.kernel_mean_, kept.kernel_mean_, rtol=1e-12)
    np.testing.assert_array_equal(blocks.encode(X), kept.encode(X))
