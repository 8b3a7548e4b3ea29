"""PCAH: signs of the top principal components, with signs fixed independently of LAPACK."""
from __future__ import annotations

import numpy as np
import pytest

from hashbench.errors import HashbenchError
from hashbench.linalg import fix_signs
from hashbench.methods.pcah import PCAH


def test_components_match_an_svd_with_fixed_signs():
    """Oracle: right singular vectors of the centred data, flipped so the largest entry is positive."""
    rng = np.random.default_rng(0)
    X = rng.normal(size=(300, 10)) * np.linspace(3.0, 0.3, 10) + 5.0
    pcah = PCAH(4).fit(X)
    _, s, Vt = np.linalg.svd(X - X.mean(0), full_matrices=False)
    for row, ref in zip(pcah.components_, Vt[:4]):
        ref = ref if ref[np.abs(ref).argmax()] > 0 else -ref
        np.testing.assert_allclose(row, ref, atol=1e-8)
    np.testing.assert_allclose(pcah.explained_variance_, s[:4] ** 2 / 299, rtol=1e-8)
    codes = pcah.encode(X)
    np.testing.assert_array_equal(codes, ((X - X.mean(0)) @ pcah.components_.T > 0).astype(np.uint8))


def test_fix_signs_by_hand():
    rows = np.array([[-3.0, 1.0, 2.0], [0.5, -0.2, 0.1], [1.0, -1.0, 0.0]])
    expected = np.array([[3.0, -1.0, -2.0], [0.5, -0.2, 0.1], [1.0, -1.0, 0.0]])  # tie: first wins
    np.testing.assert_array_equal(fix_signs(rows), expected)


def test_every_component_has_its_largest_entry_positive():
    rng = np.random.default_rng(1)
    X = rng.normal(size=(400, 12)) @ rng.normal(size=(12, 12))
    pcah = PCAH(12).fit(X)
    C = pcah.components_
    assert np.all(C[np.arange(12), np.abs(C).argmax(1)] > 0)
    np.testing.assert_allclose(C @ C.T, np.eye(12), atol=1e-10)


def test_too_many_bits_is_refused():
    with pytest.raises(HashbenchError, match="at most the number of features"):
        PCAH(7).fit(np.zeros((10, 6)))
