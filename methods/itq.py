"""``itq``: iterative quantization — PCA, then the rotation that best fits the binary hypercube.

Reference: Gong & Lazebnik, "Iterative Quantization: A Procrustean Approach to Learning Binary
Codes", CVPR 2011; Gong, Lazebnik, Gordo & Perronnin, TPAMI 35(12), 2013.

Formula. Centre the data and project on its K leading principal directions: ``V = (X - mu) W``
(n, K). Find an orthogonal ``R`` (K, K) and codes ``B`` in {-1, +1}^(n, K) minimising the
quantization loss

    Q(B, R) = || B - V R ||_F^2

by alternating, from a random orthogonal ``R``, for ``n_iter`` iterations:

    B <- sign(V R)                                  (R fixed; sign(0) = +1)
    R <- S_hat S^T  where  B^T V = S Omega S_hat^T  (B fixed: orthogonal Procrustes, an SVD)

Neither step can increase Q, so the recorded loss is non-increasing. Codes:
``code(x) = 1[(x - mu) W R > 0]``. :func:`itq_rotation` is shared with ``itq_cca``.
"""
from __future__ import annotations

import numpy as np

from hashbench.errors import HashbenchError
from hashbench.method import ClassicHasher, sign_bits
from hashbench.registry import METHODS
from hashbench.methods.pcah import principal_directions


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


def check_n_iter(est, n_iter) -> None:
    """Refuse an ``n_iter`` that is not an integer >= 0, naming the estimator."""
    if isinstance(n_iter, (bool, np.bool_)) or not isinstance(n_iter, (int, np.integer)) or n_iter < 0:
        raise HashbenchError(f"{type(est).__name__}: n_iter must be an integer >= 0; got {n_iter!r}")


@METHODS.register_module(name="itq")
class ITQ(ClassicHasher):
    """ITQ: PCA, then the rotation minimising the quantization loss (Gong & Lazebnik 2011).

    Parameters
    ----------
    n_bits : int
        Code length K; at most the number of features d.
    n_iter : int, default=50
        Number of alternating (B, R) updates (the paper's 50).
    random_state : int or None
        Seed of the random initial rotation.

    Attributes
    ----------
    mean_ : ndarray of shape (n_features,)
        Training mean.
    components_ : ndarray of shape (n_bits, n_features)
        Principal directions (as in ``pcah``, signs fixed).
    rotation_ : ndarray of shape (n_bits, n_bits)
        Learned orthogonal rotation R.
    projection_ : ndarray of shape (n_features, n_bits)
        ``components_.T @ rotation_``: codes are ``1[(x - mean_) @ projection_ > 0]``.
    quantization_loss_ : list of float, length n_iter + 1
        ``||B - V R||_F^2`` on the training set for the initial rotation and after each update
        (B = sign(V R)); non-increasing.
    n_features_in_ : int
        Number of features seen in ``fit``.

    References
    ----------
    Gong & Lazebnik, "Iterative Quantization: A Procrustean Approach to Learning Binary Codes",
    CVPR 2011; Gong, Lazebnik, Gordo & Perronnin, TPAMI 2013.

    Examples
    --------
    >>> import numpy as np
    >>> X = np.random.default_rng(0).normal(size=(200, 32))
    >>> itq = ITQ(16, random_state=0).fit(X)
    >>> itq.encode(X).shape, len(itq.quantization_loss_)
    ((200, 16), 51)
    """

    def __init__(self, n_bits: int, *, n_iter: int = 50, random_state: int | None = None):
        super().__init__(n_bits, random_state=random_state)
        self.n_iter = n_iter

    def fit(self, X: np.ndarray, Y: np.ndarray | None = None) -> "ITQ":
        """Learn mean, principal directions and rotation from ``X`` (n, d); ``Y`` is ignored."""
        check_n_iter(self, self.n_iter)
        X, _ = self._check_fit_input(X, Y)
        if self.n_bits > X.shape[1]:
            raise HashbenchError(
                f"ITQ: n_bits must be at most the number of features ({X.shape[1]}); got {self.n_bits}")
        self.mean_ = X.mean(axis=0)
        self.components_, _ = principal_directions(X - self.mean_, self.n_bits)
        V = (X - self.mean_) @ self.components_.T
        rng = np.random.default_rng(self.random_state)
        self.rotation_, self.quantization_loss_ = itq_rotation(V, self.n_iter, rng)
        self.projection_ = self.components_.T @ self.rotation_
        return self

    def encode(self, X: np.ndarray) -> np.ndarray:
        """Codes of ``X`` (n, d): ``uint8`` of shape (n, n_bits), values in {0, 1}."""
        X = self._check_encode_input(X)
        return sign_bits((X - self.mean_) @ self.projection_)
