"""``pcah``: PCA hashing, the sign of the top principal components.

Reference: the PCA baseline ("PCA-Direct") of Wang, Kumar & Chang, "Semi-Supervised Hashing for
Scalable Image Retrieval", CVPR 2010, and of Gong & Lazebnik, "Iterative Quantization", CVPR 2011.

Formula, with ``mu`` the training mean and ``W`` (d, K) the K leading eigenvectors of the training
covariance ``C = (X - mu)^T (X - mu) / (n - 1)``::

    code(x) = 1[(x - mu) W > 0]            (one bit per principal direction)

Each eigenvector is defined only up to sign; hashbench fixes it so that the entry of largest
absolute value is positive (as scikit-learn's ``svd_flip`` does), so codes do not depend on the
LAPACK build (:func:`hashbench.linalg.principal_directions`, shared with ``itq``, ``sh`` and ``itq_cca``).
"""
from __future__ import annotations

import numpy as np

from hashbench.linalg import principal_directions, sign_bits
from hashbench.method import ClassicHasher
from hashbench.registry import METHODS


@METHODS.register_module(name="pcah")
class PCAH(ClassicHasher):
    """PCA hashing: signs of the projections on the top n_bits principal directions (Wang et al. 2010).

    Parameters
    ----------
    n_bits : int
        Code length K; at most the number of features d.
    random_state : int or None
        Accepted for a uniform interface; PCAH makes no random choice.

    Attributes
    ----------
    mean_ : ndarray of shape (n_features,)
        Training mean.
    components_ : ndarray of shape (n_bits, n_features)
        Principal directions, by decreasing variance, signs fixed (largest entry positive).
    explained_variance_ : ndarray of shape (n_bits,)
        Training variance along each direction.
    n_features_in_ : int
        Number of features seen in ``fit``.

    References
    ----------
    Wang, Kumar & Chang, "Semi-Supervised Hashing for Scalable Image Retrieval", CVPR 2010.

    Examples
    --------
    >>> import numpy as np
    >>> X = np.random.default_rng(0).normal(size=(100, 16))
    >>> PCAH(8).fit(X).encode(X).shape
    (100, 8)
    """

    bits_within_features = True

    def __init__(self, n_bits: int, *, random_state: int | None = None):
        super().__init__(n_bits, random_state=random_state)

    def fit(self, X: np.ndarray, Y: np.ndarray | None = None) -> "PCAH":
        """Learn the mean and principal directions of ``X`` (n, d); ``Y`` is ignored."""
        X, _ = self._check_fit_input(X, Y)
        self.mean_ = X.mean(axis=0)
        self.components_, self.explained_variance_ = principal_directions(X - self.mean_, self.n_bits)
        # every bit is the sign of one direction: one of no variance would hash by rounding noise
        self._check_rank(self.explained_variance_, len(X), self.n_bits)
        return self

    def _encode(self, X: np.ndarray) -> np.ndarray:
        return sign_bits((X - self.mean_) @ self.components_.T)
