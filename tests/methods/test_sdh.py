"""SDH (Shen, Shen, Liu & Shen, CVPR 2015) against the paper's objective and the released code.

Checked:
1. The anchor features are the released code's: ``exp(-||x - a_j||^2 / (2 sigma^2))`` on anchors
   drawn from the training rows, a constant 1 appended, and each bandwidth rule (root mean
   squared distance, mean nearest-anchor distance, a fixed value) recomputed with plain loops.
2. The G- and F-steps are the ridge minimisers (an independent least-squares solve of the
   stacked system ``[A; sqrt(lam) I] X = [T; 0]``; lam_f = 0: numpy's minimum-norm lstsq).
3. A DCC bit update is the brute-force minimiser of the objective over that bit's column with
   every other bit fixed (all 2^n columns enumerated, objective by plain loops).
4. Along the alternation every step (G, F, B) leaves the objective
   ``||Y - B W||^2 + lam ||W||^2 + nu ||B - Phi P||^2 (+ nu lam_f ||P||^2)``, evaluated item by
   item, no larger, and B stays in {-1, +1}; the fitted model's recorded objective is that value.
5. Hamming ranking separates Gaussian clusters far better than random codes.
6. Labels: class ids are the one-hot matrix; multi-hot labels are the regression target as given.
7. Defaults are the paper's / released code's; invalid parameters are refused in one line.
"""
from __future__ import annotations

import itertools

import numpy as np
import pytest

from hashbench.errors import HashbenchError
from hashbench.methods.sdh import SDH, FStep, alternate, b_step, dcc_bit, g_step, objective

LAM, NU = 1.0, 1e-5


def _multi_hot(rng, n, C):
    Y = (rng.random((n, C)) < 0.3).astype(float)
    Y[np.arange(n), rng.integers(0, C, n)] = 1.0
    return Y


def _brute_objective(Y, B, W, Phi, P, lam, nu, lam_f=0.0):
    """sum_i ||y_i - W^T b_i||^2 + lam ||W||^2 + nu sum_i ||b_i - P^T phi(x_i)||^2 + nu lam_f ||P||^2."""
    total = 0.0
    for i in range(len(Y)):
        for c in range(Y.shape[1]):
            total += (Y[i, c] - sum(B[i, k] * W[k, c] for k in range(B.shape[1]))) ** 2
        for k in range(B.shape[1]):
            total += nu * (B[i, k] - sum(Phi[i, j] * P[j, k] for j in range(Phi.shape[1]))) ** 2
    total += lam * sum(w * w for w in W.ravel()) + nu * lam_f * sum(p * p for p in P.ravel())
    return total


def _problem(seed=0, n=40, d=5, C=4):
    rng = np.random.default_rng(seed)
    Y = _multi_hot(rng, n, C)
    X = Y @ rng.normal(size=(C, d)) + 0.5 * rng.normal(size=(n, d))
    return X, Y


# -- 1. features ------------------------------------------------------------------------------
@pytest.mark.parametrize("bandwidth", ["mean", "nearest", 0.7])
def test_anchor_features_as_in_the_released_code(bandwidth):
    X, Y = _problem(n=60)
    model = SDH(6, n_anchors=15, bandwidth=bandwidth, random_state=0).fit(X, Y)
    anchors = model.anchors_
    assert anchors.shape == (15, X.shape[1])
    rows = [tuple(r) for r in X]
    assert all(tuple(a) in rows for a in anchors) and len({tuple(a) for a in anchors}) == 15
    d2 = [[float(np.sum((x - a) ** 2)) for a in anchors] for x in X]
    if bandwidth == "mean":       # sigma = mean(mean(Dis)).^0.5
        expected = np.sqrt(sum(map(sum, d2)) / (len(X) * len(anchors)))
    elif bandwidth == "nearest":  # sigma = mean(min(Dis,[],2).^0.5)
        expected = sum(np.sqrt(min(row)) for row in d2) / len(X)
    else:
        expected = bandwidth
    assert model.sigma_ == pytest.approx(expected, rel=1e-12)
    phi = model.kernel_features(X)
    assert phi.shape == (len(X), 16)
    np.testing.assert_array_equal(phi[:, -1], 1.0)
    for i, j in [(0, 0), (3, 7), (59, 14)]:
        assert phi[i, j] == pytest.approx(np.exp(-d2[i][j] / (2 * expected ** 2)), rel=1e-10)
    assert SDH(6, n_anchors=15, bias=False, random_state=0).fit(X, Y).kernel_features(X).shape == (60, 15)


def test_codes_are_the_sign_of_the_projected_features_with_shape_and_dtype():
    X, Y = _problem(n=80)
    model = SDH(7, n_anchors=20, random_state=1).fit(X, Y)
    X_new, _ = _problem(seed=5, n=33)
    codes = model.encode(X_new)
    assert codes.shape == (33, 7) and codes.dtype == np.uint8 and set(np.unique(codes)) <= {0, 1}
    np.testing.assert_array_equal(codes, (model.kernel_features(X_new) @ model.projection_ > 0).astype(np.uint8))
    assert model.projection_.shape == (21, 7) and model.classifier_.shape == (7, 4)


def test_normalize_hashes_the_direction_of_a_row_only():
    X, Y = _problem(n=60)
    model = SDH(6, n_anchors=15, normalize=True, bandwidth=0.4, random_state=0).fit(X, Y)
    scale = np.random.default_rng(2).uniform(0.1, 10.0, size=(len(X), 1))
    np.testing.assert_array_equal(model.encode(X * scale), model.encode(X))
    np.testing.assert_allclose(np.linalg.norm(model.anchors_, axis=1), 1.0)


# -- 2. G- and F-step -------------------------------------------------------------------------
def _stacked_lstsq(A, T, lam):
    k = A.shape[1]
    return np.linalg.lstsq(np.vstack([A, np.sqrt(lam) * np.eye(k)]), np.vstack([T, np.zeros((k, T.shape[1]))]),
                           rcond=None)[0]


def test_g_and_f_steps_are_the_ridge_minimisers():
    rng = np.random.default_rng(3)
    B = np.where(rng.random((30, 5)) < 0.5, -1.0, 1.0)
    Y = _multi_hot(rng, 30, 4)
    Phi = np.hstack([rng.random((30, 9)), np.ones((30, 1))])
    np.testing.assert_allclose(g_step(B, Y, 1.0), _stacked_lstsq(B, Y, 1.0), atol=1e-12)
    np.testing.assert_allclose(FStep(Phi, 1e-2)(B), _stacked_lstsq(Phi, B, 1e-2), atol=1e-9)
    np.testing.assert_allclose(FStep(Phi, 0.0)(B), np.linalg.lstsq(Phi, B, rcond=None)[0], atol=1e-9)
    wide = rng.random((6, 10))              # fewer rows than features: the minimum-norm solution
    np.testing.assert_allclose(FStep(wide, 0.0)(B[:6]), np.linalg.pinv(wide) @ B[:6], atol=1e-9)


# -- 3. one DCC bit against enumeration ---------------------------------------------------------
@pytest.mark.parametrize("nu", [NU, 0.8])    # the paper's nu, and one where the hash-function term matters
def test_dcc_bit_update_is_the_brute_force_minimiser_of_its_column(nu):
    rng = np.random.default_rng(4)
    n, L, C, m = 7, 4, 3, 5
    Y = _multi_hot(rng, n, C)
    B = np.where(rng.random((n, L)) < 0.5, -1.0, 1.0)
    W = rng.normal(size=(L, C))
    Phi = rng.random((n, m))
    P = rng.normal(size=(m, L))
    Q = Y @ W.T + nu * (Phi @ P)
    M = W @ W.T
    for k in range(L):
        best, best_value = None, np.inf
        for column in itertools.product([-1.0, 1.0], repeat=n):
            trial = B.copy()
            trial[:, k] = column
            value = _brute_objective(Y, trial, W, Phi, P, LAM, nu)
            if value < best_value:
                best, best_value = np.array(column), value
        np.testing.assert_array_equal(dcc_bit(B, Q, M, k), best)


def test_dcc_from_zero_codes_sets_the_first_bit_to_the_sign_of_q():
    """SDH.m's first revision restarts each B-step at B = 0: bit 1 is then sgn(Q(:,1))."""
    rng = np.random.default_rng(6)
    Q, W = rng.normal(size=(20, 5)), rng.normal(size=(5, 3))
    B = b_step(np.ones((20, 5)), Q, W, 1, init="zeros")
    np.testing.assert_array_equal(B[:, 0], np.sign(Q[:, 0]))
    assert set(np.unique(B)) <= {-1.0, 1.0}


# -- 4. the alternation -------------------------------------------------------------------------
@pytest.mark.parametrize("lam_f", [0.0, 1e-2])   # the paper's F-step, and the released code's ridge
def test_no_step_of_the_alternation_increases_the_objective(lam_f):
    X, Y = _problem(seed=7, n=24, d=4)
    model = SDH(5, n_anchors=8, lam_f=lam_f, random_state=0).fit(X, Y)   # anchors, sigma: the fit's
    Phi = model.kernel_features(X)
    B0 = np.where(np.random.default_rng(8).standard_normal((len(X), 5)) >= 0, 1.0, -1.0)
    values, steps = [], []
    for step, B, W, P in alternate(Phi, Y, B0, lam=LAM, nu=0.3, lam_f=lam_f, n_iter=6, dcc_iter=10, tol=0.0):
        assert set(np.unique(B)) <= {-1.0, 1.0}
        if P is not None:
            values.append(_brute_objective(Y, B, W, Phi, P, LAM, 0.3, lam_f))
            assert values[-1] == pytest.approx(objective(Y, B, W, Phi, P, lam=LAM, nu=0.3, lam_f=lam_f), rel=1e-10)
            steps.append(step)
    assert steps == ["F"] + ["B", "G", "F"] * 6
    increases = [(s, b - a) for s, a, b in zip(steps[1:], values, values[1:]) if b > a * (1 + 1e-12)]
    assert not increases, increases
    assert values[-1] < values[1]                 # and it does descend

    # a B-step stopped before its last sweep is a fixed point: no single bit can improve
    M = W @ W.T
    Q = Y @ W.T + 0.3 * (Phi @ P)
    B = b_step(B, Q, W, 50)
    for k in range(B.shape[1]):
        np.testing.assert_array_equal(dcc_bit(B, Q, M, k), B[:, k])


def test_fit_records_the_objective_of_its_own_codes_and_stops_when_p_settles():
    X, Y = _problem(seed=9, n=50)
    model = SDH(6, n_anchors=12, random_state=3).fit(X, Y)
    trace = model.objective_
    assert all(b <= a * (1 + 1e-12) for a, b in zip(trace, trace[1:])), trace
    B = 2.0 * model.train_codes_ - 1.0
    final = _brute_objective(Y, B, model.classifier_, model.kernel_features(X), model.projection_, LAM, NU, 1e-2)
    assert trace[-1] == pytest.approx(final, rel=1e-10)
    assert len(trace) == 1 + 3 * model.n_iter_ and 1 <= model.n_iter_ <= 5
    np.testing.assert_allclose(model.classifier_, g_step(B, Y, LAM), atol=1e-12)


def test_same_seed_same_model_other_seed_other_anchors():
    X, Y = _problem(n=60)
    a, b = SDH(6, n_anchors=10, random_state=1).fit(X, Y), SDH(6, n_anchors=10, random_state=1).fit(X, Y)
    np.testing.assert_array_equal(a.projection_, b.projection_)
    c = SDH(6, n_anchors=10, random_state=2).fit(X, Y)
    assert not np.array_equal(a.anchors_, c.anchors_)


# -- 5. retrieval -------------------------------------------------------------------------------
def test_beats_random_codes_on_separable_clusters(clusters, brute_force_map):
    X, y = clusters(700, 8, 5, seed=0, spread=0.5)
    Xq, yq, Xd, yd = X[:100], y[:100], X[100:], y[100:]
    model = SDH(16, n_anchors=150, random_state=0).fit(Xd, yd)
    map_sdh = brute_force_map(model.encode(Xq), model.encode(Xd), yq, yd)
    rng = np.random.default_rng(1)
    map_random = brute_force_map(rng.integers(0, 2, (100, 16)), rng.integers(0, 2, (600, 16)), yq, yd)
    assert map_sdh > 0.9 and map_sdh > map_random + 0.5, (map_sdh, map_random)


# -- 6. labels ----------------------------------------------------------------------------------
def test_class_ids_are_one_hot_and_multi_hot_labels_are_the_target_as_given():
    X, y = _problem(n=50)[0], np.random.default_rng(0).integers(0, 3, 50)
    ids = SDH(6, n_anchors=10, random_state=0).fit(X, y)
    onehot = SDH(6, n_anchors=10, random_state=0).fit(X, np.eye(3)[y])
    np.testing.assert_array_equal(ids.projection_, onehot.projection_)
    X, Y = _problem(n=50)
    multi = SDH(6, n_anchors=10, random_state=0).fit(X, Y.astype(np.uint8))
    B = 2.0 * multi.train_codes_ - 1.0
    np.testing.assert_allclose(multi.classifier_, g_step(B, Y, LAM), atol=1e-12)   # W regresses Y itself


# -- 7. constants and refusals ------------------------------------------------------------------
def test_defaults_are_the_papers_and_the_released_codes():
    params = SDH(32).get_params()
    assert params == dict(n_bits=32, n_anchors=1000, bandwidth="mean", normalize=False, bias=True, lam=1.0,
                          nu=1e-5, lam_f=1e-2, n_iter=5, dcc_iter=10, tol=1e-5, dcc_init="previous",
                          random_state=None)


@pytest.mark.parametrize("params,message", [
    (dict(n_anchors=0), "SDH: n_anchors must be an integer >= 1; got 0"),
    (dict(bandwidth="median"), "SDH: bandwidth must be one of mean, nearest or a number > 0; got 'median'"),
    (dict(bandwidth=0.0), "SDH: bandwidth must be one of mean, nearest or a number > 0; got 0.0"),
    (dict(lam=0.0), "SDH: lam must be a number > 0; got 0.0"),
    (dict(nu=-1e-5), "SDH: nu must be a number > 0; got -1e-05"),
    (dict(lam_f=-0.01), "SDH: lam_f must be a number >= 0; got -0.01"),
    (dict(n_iter=0), "SDH: n_iter must be an integer >= 1; got 0"),
    (dict(dcc_iter=2.5), "SDH: dcc_iter must be an integer >= 1; got 2.5"),
    (dict(tol=-1.0), "SDH: tol must be a number >= 0; got -1.0"),
    (dict(dcc_init="random"), "SDH: dcc_init must be one of previous, zeros; got 'random'"),
    (dict(normalize="maybe"), "SDH: normalize must be true or false (also yes/no, on/off, 1/0); got 'maybe'"),
])
def test_invalid_parameters_are_refused_in_one_line(params, message):
    X, Y = _problem()
    with pytest.raises(HashbenchError) as err:
        SDH(8, random_state=0, **params).fit(X, Y)
    assert str(err.value) == message


def test_a_zero_nearest_anchor_bandwidth_is_refused():
    X, Y = _problem(n=30)                   # 30 rows, 1000 anchors: every row is its own nearest anchor
    with pytest.raises(HashbenchError) as err:
        SDH(8, bandwidth="nearest", random_state=0).fit(X, Y)
    message = str(err.value)
    assert message.startswith("SDH.fit: bandwidth='nearest' gives sigma = 0") and "\n" not in message
