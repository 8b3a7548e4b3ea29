"""LSH (Charikar 2002): P[bit differs] = angle / pi for random Gaussian hyperplanes."""
from __future__ import annotations

import numpy as np
import pytest

from hashbench.errors import HashbenchError
from hashbench.methods.lsh import LSH


@pytest.mark.parametrize("angle", [np.pi / 6, np.pi / 2, 5 * np.pi / 6])
def test_differing_bits_estimate_the_angle(angle):
    """8 seeds x 1024 hyperplanes: the fraction of differing bits is within 4 sigma of angle/pi."""
    rng = np.random.default_rng(0)
    d = 32
    u, v = np.linalg.qr(rng.normal(size=(d, 2)))[0].T          # orthonormal pair
    x = 3.0 * u
    y = 0.5 * (np.cos(angle) * u + np.sin(angle) * v)        # norms must not matter
    X = np.stack([x, y])
    differ = []
    for seed in range(8):
        codes = LSH(1024, center=False, random_state=seed).fit(X).encode(X)
        differ.append(np.mean(codes[0] != codes[1]))
    p = angle / np.pi
    sigma = np.sqrt(p * (1 - p) / (8 * 1024))
    assert abs(np.mean(differ) - p) < 4 * sigma


def test_centring_is_a_parameter():
    X = np.random.default_rng(0).normal(size=(100, 5)) + 10.0
    centred = LSH(16, random_state=0).fit(X)
    raw = LSH(16, center=False, random_state=0).fit(X)
    np.testing.assert_allclose(centred.mean_, X.mean(0))
    np.testing.assert_array_equal(raw.mean_, 0.0)
    # all data far from the origin on the positive side: raw hyperplanes give near-constant bits
    assert centred.encode(X).mean(0).min() > 0.2
    raw_codes = raw.encode(X)
    assert np.mean(np.all(raw_codes == raw_codes[0], axis=0)) > 0.5
    with pytest.raises(HashbenchError, match="center"):
        LSH(4, center="maybe").fit(X)


def test_projection_is_standard_gaussian():
    lsh = LSH(512, random_state=0).fit(np.zeros((2, 64)))
    W = lsh.projection_
    assert abs(W.mean()) < 0.01 and abs(W.std() - 1.0) < 0.01
