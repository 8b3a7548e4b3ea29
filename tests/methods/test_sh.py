"""Spectral hashing (Weiss, Torralba & Fergus 2008) against properties stated in the paper.

Checked:
1. The bits use the 1-D eigenfunctions with the smallest analytical eigenvalues
   ``lambda_{j,k} = 1 - exp(-epsilon^2/2 * (k pi / (b_j - a_j))^2)``, computed here by a plain loop.
2. On a 2-D rectangle of sides 2.5 x 1 the second mode of the long side comes before the first mode
   of the short side (the paper's rectangle example: long directions receive several bits), and
   the bits meet the constraints of the paper's relaxed problem: balanced (each bit is 1 for
   half the data) and uncorrelated.
3. For a 1-D uniform box [a, b], bit k is ``sin(pi/2 + k pi (x - a)/(b - a)) > 0``: it switches at
   ``x = a + (b - a)(2i + 1)/(2k)``, listed by hand for k = 1, 2, 3.
"""
from __future__ import annotations

import numpy as np

from hashbench.methods.sh import SH


def test_selected_modes_have_the_smallest_analytical_eigenvalues():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(3000, 6)) * [3.0, 2.2, 1.7, 1.0, 0.6, 0.3]
    sh = SH(10).fit(X)
    V = (X - sh.mean_) @ sh.components_.T
    np.testing.assert_allclose(sh.box_min_, V.min(0))
    np.testing.assert_allclose(sh.box_max_, V.max(0))

    spread = V.max(0) - V.min(0)
    epsilon = 0.5 * spread.min() / np.pi     # keeps 1 - exp(-x) away from rounding to 1
    candidates = []
    for j in range(V.shape[1]):
        for k in range(1, 40):
            omega = k * np.pi / spread[j]
            candidates.append((-np.expm1(-epsilon ** 2 / 2 * omega ** 2), j, k))
    candidates.sort()
    expected = [(j, k) for _, j, k in candidates[:10]]
    assert list(zip(sh.dims_.tolist(), sh.modes_.tolist())) == expected
    assert np.all(np.diff(sh.frequencies_) >= 0)


def test_rectangle_long_side_gets_two_bits_and_bits_are_balanced_and_uncorrelated():
    rng = np.random.default_rng(1)
    X = rng.uniform(size=(20000, 2)) * [2.5, 1.0]     # frequencies: long 0.4pi, 0.8pi; short 1.0pi
    sh = SH(3).fit(X)
    assert abs(sh.components_[0, 0]) > 0.99             # first principal direction = long side
    assert sh.dims_.tolist() == [0, 0, 1]
    assert sh.modes_.tolist() == [1, 2, 1]
    codes = sh.encode(X).astype(float)
    np.testing.assert_allclose(codes.mean(0), 0.5, atol=0.02)
    signed = 2 * codes - 1
    off_diagonal = (signed.T @ signed / len(signed))[~np.eye(3, dtype=bool)]
    np.testing.assert_allclose(off_diagonal, 0.0, atol=0.04)


def test_one_dimensional_box_thresholds_by_hand():
    rng = np.random.default_rng(2)
    x = np.concatenate([[-3.0, 5.0], rng.uniform(-3.0, 5.0, size=4000)])   # box exactly [-3, 5]
    sh = SH(3).fit(x[:, None])
    assert sh.modes_.tolist() == [1, 2, 3]
    u = (x - (-3.0)) / 8.0        # position in the box, in [0, 1]
    by_hand = np.stack([
        u < 1 / 2,                                   # k = 1: switches at 1/2
        (u < 1 / 4) | (u > 3 / 4),                   # k = 2: at 1/4, 3/4
        (u < 1 / 6) | ((u > 3 / 6) & (u < 5 / 6)),   # k = 3: at 1/6, 3/6, 5/6
    ], axis=1).astype(np.uint8)
    codes = sh.encode(x[:, None])
    # the projection's sign is fixed (+1 for one feature), so x and the projection increase together
    near_a_switch = np.min(np.abs(u[:, None] - np.array([1, 2, 3, 4, 5]) / 6), axis=1) < 1e-9
    near_a_switch |= np.min(np.abs(u[:, None] - np.array([1, 3]) / 4), axis=1) < 1e-9
    np.testing.assert_array_equal(codes[~near_a_switch], by_hand[~near_a_switch])
