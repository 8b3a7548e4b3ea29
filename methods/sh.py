"""``sh``: spectral hashing — thresholded analytical eigenfunctions of a box-shaped distribution.

Reference: Weiss, Torralba & Fergus, "Spectral Hashing", NIPS 2008.

Formula. Centre the data and project on its ``p = min(K, d)`` leading principal directions:
``v = (x - mu) W``. Along each direction j, approximate the data by a uniform distribution on
``[a_j, b_j]`` (the training minimum and maximum). The one-dimensional Laplacian eigenfunctions of
a uniform box, and their eigenvalues for a Gaussian affinity of width epsilon, are

    Phi_{j,k}(v) = sin(pi/2 + k pi (v_j - a_j) / (b_j - a_j))
    lambda_{j,k} = 1 - exp(-(epsilon^2 / 2) * |k pi / (b_j - a_j)|^2),      k = 1, 2, ...

(k = 0 is the constant function and is skipped). Since lambda grows with the frequency
``omega_{j,k} = k pi / (b_j - a_j)`` whatever epsilon is, SH keeps the K pairs (j, k) with the
smallest omega (one-dimensional modes only, as in the paper's algorithm) and sets

    bit_i(x) = 1[Phi_{j_i, k_i}(v) > 0].

Ties in omega go to the lower direction index, then the lower k. A long side of the box gets
several bits (k = 1, 2, ...) before a short side gets its first.
"""
from __future__ import annotations

import numpy as np

from hashbench.errors import HashbenchError
from hashbench.linalg import principal_directions, sign_bits
from hashbench.method import ClassicHasher
from hashbench.registry import METHODS


@METHODS.register_module(name="sh")
class SH(ClassicHasher):
    """Spectral hashing: thresholded 1-D eigenfunctions of a box on PCA directions (Weiss et al. 2008).

    Parameters
    ----------
    n_bits : int
        Code length K. The data are projected on ``min(n_bits, n_features)`` principal directions.
    random_state : int or None
        Accepted for a uniform interface; SH makes no random choice.

    Attributes
    ----------
    mean_ : ndarray of shape (n_features,)
        Training mean.
    components_ : ndarray of shape (n_pca, n_features)
        Principal directions, ``n_pca = min(n_bits, n_features)``, signs fixed as in ``pcah``.
    box_min_, box_max_ : ndarray of shape (n_pca,)
        The box ``[a_j, b_j]``: training minimum and maximum of each projection.
    dims_ : ndarray of shape (n_bits,)
        Principal direction j used by each bit.
    modes_ : ndarray of shape (n_bits,)
        Mode k >= 1 of each bit.
    frequencies_ : ndarray of shape (n_bits,)
        ``omega = k pi / (b_j - a_j)`` of each bit, non-decreasing; the paper's eigenvalue
        ``1 - exp(-epsilon^2 omega^2 / 2)`` increases with it.
    n_features_in_ : int
        Number of features seen in ``fit``.

    References
    ----------
    Weiss, Torralba & Fergus, "Spectral Hashing", NIPS 2008.

    Examples
    --------
    >>> import numpy as np
    >>> X = np.random.default_rng(0).normal(size=(200, 8))
    >>> sh = SH(12).fit(X)
    >>> sh.encode(X).shape, int(sh.modes_.max()) >= 2
    ((200, 12), True)
    """

    def __init__(self, n_bits: int, *, random_state: int | None = None):
        super().__init__(n_bits, random_state=random_state)

    def fit(self, X: np.ndarray, Y: np.ndarray | None = None) -> "SH":
        """Learn PCA, the box and the K lowest-frequency modes from ``X`` (n, d); ``Y`` is ignored."""
        X, _ = self._check_fit_input(X, Y)
        n_pca = min(self.n_bits, X.shape[1])
        self.mean_ = X.mean(axis=0)
        self.components_, _ = principal_directions(X - self.mean_, n_pca)
        V = (X - self.mean_) @ self.components_.T
        self.box_min_, self.box_max_ = V.min(axis=0), V.max(axis=0)
        spread = self.box_max_ - self.box_min_
        if not np.any(spread > 0):
            # identical rows are refused by _check_fit_input; this is data whose spread is lost to
            # rounding in the projection (e.g. rows differing by 1e-300)
            raise HashbenchError("SH.fit: the training data have no spread along any principal direction; "
                                 "it needs rows that differ in at least one feature")
        # Candidate modes k = 1..K on every direction; the K lowest never need k > K, since the
        # widest direction alone offers K modes of frequency <= K pi / max(spread).
        ks = np.arange(1, self.n_bits + 1)
        with np.errstate(divide="ignore"):
            omega = ks[None, :] * np.pi / spread[:, None]  # (n_pca, K); inf for a flat direction
        order = np.argsort(omega.ravel(), kind="stable")[: self.n_bits]  # direction-major: ties
        self.dims_, k_index = np.unravel_index(order, omega.shape)       # go to lower j, then k
        self.modes_ = ks[k_index]
        self.frequencies_ = omega.ravel()[order]
        return self

    def _encode(self, X: np.ndarray) -> np.ndarray:
        V = (X - self.mean_) @ self.components_.T
        offset = V[:, self.dims_] - self.box_min_[self.dims_]  # (n, K)
        return sign_bits(np.sin(np.pi / 2 + offset * self.frequencies_))
