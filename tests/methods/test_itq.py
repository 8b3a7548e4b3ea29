"""ITQ (Gong & Lazebnik 2011): monotone quantization loss, an orthogonal rotation, and gains over PCAH."""
from __future__ import annotations

import numpy as np
import pytest

from hashbench.errors import HashbenchError
from hashbench.linalg import itq_rotation
from hashbench.methods.itq import ITQ
from hashbench.methods.pcah import PCAH


@pytest.fixture
def data(clusters):
    """20 Gaussian clusters in 64-D with per-axis spread falling from 2 to 0.5; 200 queries."""
    X, y = clusters(2200, 64, 20, seed=0, scales=np.linspace(2.0, 0.5, 64))
    return X[:200], y[:200], X[200:], y[200:]


def test_quantization_loss_never_increases(data):
    _, _, X, _ = data
    itq = ITQ(32, n_iter=50, random_state=0).fit(X)
    loss = np.asarray(itq.quantization_loss_)
    assert len(loss) == 51
    assert np.all(np.diff(loss) <= 1e-9 * loss[0])
    assert loss[-1] < 0.95 * loss[0]


def test_recorded_loss_is_the_loss_of_the_final_rotation(data):
    """Oracle: recompute ||sign(V R) - V R||_F^2 from the fitted attributes."""
    _, _, X, _ = data
    itq = ITQ(16, random_state=1).fit(X)
    np.testing.assert_allclose(itq.rotation_.T @ itq.rotation_, np.eye(16), atol=1e-10)
    V = (X - itq.mean_) @ itq.projection_
    B = np.where(V >= 0, 1.0, -1.0)
    assert np.sum((B - V) ** 2) == pytest.approx(itq.quantization_loss_[-1], rel=1e-10)
    np.testing.assert_array_equal(itq.encode(X), (V > 0).astype(np.uint8))


def test_procrustes_step_is_optimal():
    """One update: the new R beats 200 random rotations on ||B - V R|| for the B of the old R."""
    rng = np.random.default_rng(0)
    V = rng.normal(size=(300, 4)) * [3.0, 1.0, 0.5, 0.2]
    R1, _ = itq_rotation(V, 1, np.random.default_rng(5))
    R0, _ = itq_rotation(V, 0, np.random.default_rng(5))
    B = np.where(V @ R0 >= 0, 1.0, -1.0)
    best = np.sum((B - V @ R1) ** 2)
    for _ in range(200):
        Q, _ = np.linalg.qr(rng.normal(size=(4, 4)))
        assert best <= np.sum((B - V @ Q) ** 2) + 1e-9


def test_itq_beats_pcah(data, brute_force_map):
    """Lower quantization error than PCA + sign (R = I) and better retrieval mAP at 32 bits."""
    Xq, yq, Xd, yd = data
    itq = ITQ(32, random_state=0).fit(Xd)
    pcah = PCAH(32).fit(Xd)
    V = (Xd - pcah.mean_) @ pcah.components_.T
    pcah_loss = np.sum((np.where(V >= 0, 1.0, -1.0) - V) ** 2)
    assert itq.quantization_loss_[-1] < 0.95 * pcah_loss
    map_itq = brute_force_map(itq.encode(Xq), itq.encode(Xd), yq, yd)
    map_pcah = brute_force_map(pcah.encode(Xq), pcah.encode(Xd), yq, yd)
    assert map_itq > map_pcah + 0.05, (map_itq, map_pcah)


def test_refuses_bad_parameters():
    X = np.random.default_rng(0).normal(size=(50, 8))
    with pytest.raises(HashbenchError, match="n_bits"):
        ITQ(9).fit(X)
    with pytest.raises(HashbenchError, match="n_iter"):
        ITQ(4, n_iter=-1).fit(X)
