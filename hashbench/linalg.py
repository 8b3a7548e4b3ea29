"""Linear-algebra pieces the classic estimators share, each written once.

- :func:`fix_signs` — deterministic signs of eigen/singular vectors (largest entry positive, as
  scikit-learn's ``svd_flip``), so codes do not depend on the LAPACK build;
- :func:`principal_directions` — leading principal directions of centred data (pcah, itq, sh,
  itq_cca);
- :func:`random_rotation` and :func:`itq_rotation` — ITQ's alternating fit of a rotation to the
  binary hypercube (itq, itq_cca);
- :func:`label_matrix` — labels as a (n, C) matrix, class ids one-hot (itq_cca, ksh);
- :func:`sign_bits` — {0, 1} codes from real projections.
"""
from __future__ import annotations

import numpy as np
import scipy.linalg

from hashbench.errors import HashbenchError


def sign_bits(values: np.ndarray) -> np.ndarray:
    """{0,1} codes from real projections: bit = 1 where the value is > 0."""
    return (np.asarray(values) > 0).astype(np.uint8)


def fix_signs(vectors: np.ndarray) -> np.ndarray:
    """Flip each row of ``vectors`` (k, d) so that its entry of largest magnitude is positive.

    Returns a new array of the same shape. Ties in magnitude go to the first such entry.
    """
    vectors = np.array(vectors, dtype=np.float64, copy=True)
    if vectors.size == 0:
        return vectors
    biggest = np.abs(vectors).argmax(axis=1)
    signs = np.sign(vectors[np.arange(len(vectors)), biggest])
    signs[signs == 0] = 1.0
    return vectors * signs[:, None]


def principal_directions(Xc: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` leading principal directions of already-centred data.

    Parameters
    ----------
    Xc : ndarray of shape (n_samples, n_features)
        Mean-centred data.
    k : int
        Number of directions, ``1 <= k <= n_features``.

    Returns
    -------
    components : ndarray of shape (k, n_features)
        Orthonormal rows, by decreasing variance, signs fixed by :func:`fix_signs`.
    variances : ndarray of shape (k,)
        Variance of the data along each direction (divisor ``n - 1``), decreasing.
    """
    n, d = Xc.shape
    assert 1 <= k <= d, (k, d)
    cov = Xc.T @ Xc / max(n - 1, 1)
    values, vectors = scipy.linalg.eigh(cov, subset_by_index=[d - k, d - 1])
    order = np.argsort(values, kind="stable")[::-1]  # eigh returns ascending values
    return fix_signs(vectors[:, order].T), np.clip(values[order], 0.0, None)


def random_rotation(k: int, rng: np.random.Generator) -> np.ndarray:
    """A uniformly distributed (Haar) random orthogonal matrix of shape (k, k)."""
    q, r = np.linalg.qr(rng.standard_normal((k, k)))
    signs = np.sign(np.diag(r))
    signs[signs == 0] = 1.0
    return q * signs


def itq_rotation(V: np.ndarray, n_iter: int, rng: np.random.Generator) -> tuple[np.ndarray, list[float]]:
    """ITQ's alternating minimisation of ``||B - V R||_F^2`` over codes B and rotations R.

    Parameters
    ----------
    V : ndarray of shape (n_samples, k)
        Centred, projected data.
    n_iter : int
        Number of (B, R) updates.
    rng : numpy Generator
        Source of the random initial rotation.

    Returns
    -------
    rotation : ndarray of shape (k, k)
        The orthogonal matrix R after ``n_iter`` updates.
    losses : list of float, length n_iter + 1
        ``losses[t] = ||sign(V R_t) - V R_t||_F^2`` for the rotation after t updates
        (``R_0`` is the random initial one); non-increasing up to rounding.
    """
    R = random_rotation(V.shape[1], rng)
    losses = []
    for _ in range(n_iter):
        Z = V @ R
        B = np.where(Z >= 0, 1.0, -1.0)
        losses.append(float(np.sum((B - Z) ** 2)))
        # Procrustes: maximise trace(R^T V^T B) over orthogonal R
        U, _, Wt = np.linalg.svd(V.T @ B)
        R = U @ Wt
    Z = V @ R
    losses.append(float(np.sum((np.where(Z >= 0, 1.0, -1.0) - Z) ** 2)))
    return R, losses


def label_matrix(Y: np.ndarray, who: str) -> np.ndarray:
    """Labels as a float matrix of shape (n, C): multi-hot kept, class ids (n,) one-hot (columns in
    sorted order of the ids)."""
    Y = np.asarray(Y)
    if Y.ndim == 1:
        _, inverse = np.unique(Y, return_inverse=True)
        return np.eye(inverse.max() + 1)[inverse]
    if Y.ndim != 2:
        raise HashbenchError(f"{who}: Y must be labels of shape (n,) or multi-hot (n, C); got {Y.shape}")
    return Y.astype(np.float64)
