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
``code(x) = 1[(x - mu) W R > 0]``. The alternation, :func:`hashbench.linalg.itq_rotation`, is shared with
``itq_cca``.
"""
from __future__ import annotations

import numpy as np

from hashbench.linalg import itq_rotation, principal_directions, sign_bits
from hashbench.method import ClassicHasher
from hashbench.params import Interval
from hashbench.registry import METHODS


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

    bits_within_features = True
    _parameter_constraints = {"n_iter": [Interval(int, 0, None)]}

    def __init__(self, n_bits: int, *, n_iter: int = 50, random_state: int | None = None):
        super().__init__(n_bits, random_state=random_state)
        self.n_iter = n_iter

    def fit(self, X: np.ndarray, Y: np.ndarray | None = None) -> "ITQ":
        """Learn mean, principal directions and rotation from ``X`` (n, d); ``Y`` is ignored."""
        X, _ = self._check_fit_input(X, Y)
        self.mean_ = X.mean(axis=0)
        self.components_, variances = principal_directions(X - self.mean_, self.n_bits)
        # ITQ rotates all n_bits directions together: a direction of no variance would mix noise
        # into every bit rather than into one
        self._check_rank(variances, len(X), self.n_bits)
        V = (X - self.mean_) @ self.components_.T
        rng = np.random.default_rng(self.random_state)
        self.rotation_, self.quantization_loss_ = itq_rotation(V, self.n_iter, rng)
        self.projection_ = self.components_.T @ self.rotation_
        return self

    def _encode(self, X: np.ndarray) -> np.ndarray:
        return sign_bits((X - self.mean_) @ self.projection_)
