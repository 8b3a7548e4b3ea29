"""``itq_cca``: supervised ITQ — canonical correlation analysis with the labels, then ITQ's rotation.

Reference: Gong & Lazebnik, "Iterative Quantization: A Procrustean Approach to Learning Binary
Codes", CVPR 2011, section on CCA; Gong, Lazebnik, Gordo & Perronnin, TPAMI 35(12), 2013.

Formula. With centred features ``Xc`` (n, d), centred labels ``Yc`` (n, C) (multi-hot; integer
class labels are one-hot encoded) and covariances regularised by ``reg``,

    Cxx = Xc^T Xc / (n - 1) + reg I,   Cyy = Yc^T Yc / (n - 1) + reg I,   Cxy = Xc^T Yc / (n - 1),

the canonical directions ``w_k`` of the features solve the generalised eigenproblem

    Cxy Cyy^-1 Cyx w_k = rho_k^2 Cxx w_k,      w_k^T Cxx w_k = 1,

where rho_k is the k-th canonical correlation. (Computed here as the SVD of
``Lx^-1 Cxy Ly^-T`` with ``Lx, Ly`` Cholesky factors.) As in the paper and the authors' released
``cca.m`` (reg = 1e-4 there too; its ``r`` is the square root of the eigenvalue, i.e. rho_k),
each direction is scaled by its correlation, ``V = Xc [rho_1 w_1, ..., rho_K w_K]``, and ITQ's
rotation R (see ``itq``) is learnt on V. Codes: ``code(x) = 1[(x - mu) [rho_k w_k]_k R > 0]``.

Too many bits. Only ``q = min(d, rank(Yc))`` canonical directions exist (for one-hot labels of C
classes, rank(Yc) = C - 1). With ``fill="pca"`` (default) the remaining K - q dimensions are the
leading principal directions of the residual — the features with the span of the q canonical
directions projected out — each scaled to the variance rho_q^2 of the weakest canonical dimension
(so no unsupervised dimension outweighs a supervised one); ITQ then rotates all K together. This
padding is hashbench's choice, not the paper's (the released code would take eigenvectors of
correlation ~0, scaled to ~0); ``n_canonical_`` records q. With ``fill="raise"``
such an ``n_bits`` is refused with a :class:`HashbenchError` naming the limit.
"""
from __future__ import annotations

import numpy as np
import scipy.linalg

from hashbench.errors import HashbenchError
from hashbench.linalg import fix_signs, itq_rotation, label_matrix, principal_directions, sign_bits
from hashbench.method import ClassicHasher
from hashbench.params import Interval, Options
from hashbench.registry import METHODS

_FILL = ("pca", "raise")


@METHODS.register_module(name="itq_cca")
class ITQCCA(ClassicHasher):
    """Supervised ITQ: correlation-scaled CCA directions, then ITQ's rotation (Gong & Lazebnik 2011).

    Parameters
    ----------
    n_bits : int
        Code length K; at most the number of features d.
    n_iter : int, default=50
        ITQ iterations (the paper's 50).
    reg : float, default=1e-4
        Ridge added to the diagonals of both covariance matrices (the 1e-4 of the authors' code).
    fill : {"pca", "raise"}, default="pca"
        What to do when ``n_bits`` exceeds the number q of canonical directions (see the module
        docstring): pad with residual principal directions, or raise.
    random_state : int or None
        Seed of ITQ's random initial rotation.

    Attributes
    ----------
    mean_ : ndarray of shape (n_features,)
        Training mean of the features.
    correlations_ : ndarray of shape (n_canonical_,)
        Canonical correlations rho_k of the directions used, decreasing.
    n_canonical_ : int
        Number q of canonical directions used (the rest, if any, is residual PCA padding).
    embedding_ : ndarray of shape (n_features, n_bits)
        Scaled directions ``[rho_1 w_1, ..., rho_q w_q, padding...]`` before rotation.
    rotation_ : ndarray of shape (n_bits, n_bits)
        ITQ's orthogonal rotation R.
    projection_ : ndarray of shape (n_features, n_bits)
        ``embedding_ @ rotation_``: codes are ``1[(x - mean_) @ projection_ > 0]``.
    quantization_loss_ : list of float, length n_iter + 1
        ITQ's loss ``||B - V R||_F^2`` on the training set, initial then after each update.
    n_features_in_ : int
        Number of features seen in ``fit``.

    References
    ----------
    Gong & Lazebnik, "Iterative Quantization: A Procrustean Approach to Learning Binary Codes",
    CVPR 2011; Gong, Lazebnik, Gordo & Perronnin, TPAMI 2013.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> X, y = rng.normal(size=(300, 20)), rng.integers(0, 10, size=300)
    >>> model = ITQCCA(8, random_state=0).fit(X, y)
    >>> model.encode(X).shape, model.n_canonical_
    ((300, 8), 8)
    """

    supervised = True
    bits_within_features = True
    _parameter_constraints = {"n_iter": [Interval(int, 0, None)], "reg": [Interval(float, 0, None, closed="neither")],
                              "fill": [Options(*_FILL)]}

    def __init__(self, n_bits: int, *, n_iter: int = 50, reg: float = 1e-4, fill: str = "pca",
                 random_state: int | None = None):
        super().__init__(n_bits, random_state=random_state)
        self.n_iter = n_iter
        self.reg = reg
        self.fill = fill

    def fit(self, X: np.ndarray, Y: np.ndarray | None = None) -> "ITQCCA":
        """Learn CCA directions and ITQ rotation from ``X`` (n, d) and labels ``Y`` (n, C) or (n,)."""
        X, Y = self._check_fit_input(X, Y)
        Y = label_matrix(Y, "ITQCCA")
        n, d = X.shape

        self.mean_ = X.mean(axis=0)
        Xc, Yc = X - self.mean_, Y - Y.mean(axis=0)
        del X  # our float64 copy; dropped so that fit holds two (n, d) arrays at most, not four
        scale = 1.0 / max(n - 1, 1)
        try:
            Lx = np.linalg.cholesky(Xc.T @ Xc * scale + self.reg * np.eye(d))
            Ly = np.linalg.cholesky(Yc.T @ Yc * scale + self.reg * np.eye(Y.shape[1]))
        except np.linalg.LinAlgError:
            raise HashbenchError(
                f"ITQCCA: the regularised covariances are numerically singular with reg={self.reg}; "
                f"use a larger reg or rescale the features") from None
        T = scipy.linalg.solve_triangular(Lx, Xc.T @ Yc * scale, lower=True)   # Lx^-1 Cxy
        M = scipy.linalg.solve_triangular(Ly, T.T, lower=True).T                # ... Ly^-T
        U, rho, _ = np.linalg.svd(M, full_matrices=False)
        W = scipy.linalg.solve_triangular(Lx.T, U, lower=False)                 # w^T Cxx w = 1
        W = fix_signs(W.T).T

        y_sv = np.linalg.svd(Yc, compute_uv=False)
        y_rank = int(np.sum(y_sv > y_sv.max(initial=0.0) * max(Yc.shape) * np.finfo(float).eps))
        q = min(d, y_rank, self.n_bits)
        if q < self.n_bits and self.fill == "raise":
            raise HashbenchError(
                f"ITQCCA: n_bits={self.n_bits} exceeds the {min(d, y_rank)} canonical directions "
                f"available (min(n_features={d}, rank of centred labels={y_rank})); use at most "
                f"{min(d, y_rank)} bits or fill='pca'")
        if q == 0:
            raise HashbenchError("ITQCCA: the labels Y are constant, so there is no canonical direction")
        self.n_canonical_ = q
        self.correlations_ = rho[:q]
        embedding = W[:, :q] * rho[:q]
        if q < self.n_bits:
            basis, _ = np.linalg.qr(W[:, :q])
            residual = (Xc @ basis) @ basis.T
            np.subtract(Xc, residual, out=residual)  # Xc - projection, without a third (n, d) array
            extra, variance = principal_directions(residual, self.n_bits - q)
            # residual directions are orthogonal to span(W_q), so X and the residual agree on them
            # (a direction of no residual variance gets weight 0 rather than amplified rounding noise)
            usable = variance > 1e-12 * max(variance.max(initial=0.0), 1e-300)
            weight = np.where(usable, rho[q - 1] / np.sqrt(np.where(usable, variance, 1.0)), 0.0)
            embedding = np.hstack([embedding, extra.T * weight])
        self.embedding_ = embedding
        V = Xc @ embedding
        rng = np.random.default_rng(self.random_state)
        self.rotation_, self.quantization_loss_ = itq_rotation(V, self.n_iter, rng)
        self.projection_ = embedding @ self.rotation_
        return self

    def _encode(self, X: np.ndarray) -> np.ndarray:
        return sign_bits((X - self.mean_) @ self.projection_)
