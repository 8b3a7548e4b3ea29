"""``ksh``: kernel-based supervised hashing — bits fitted one by one to the pairwise label matrix.

Reference: Liu, Wang, Ji, Jiang & Chang, "Supervised Hashing with Kernels", CVPR 2012.

Formula. Pick m anchors ``a_1..a_m`` among the training samples. Kernel features are zero-mean
Gaussian RBF values

    k(x) = [exp(-||x - a_j||^2 / (2 sigma^2))]_j - kmean,      sigma^2 = mean ||x_i - a_j||^2 (training),

with ``kmean`` the training mean of the raw kernel vector; bit k is ``h_k(x) = sgn(k(x)^T a_k)``.
The bandwidth is the one of the authors' released code, ``sigma = mean(mean(sqdist(X, anchors)))``
and ``exp(-D / (2 sigma))`` on squared distances D: their "sigma" is the mean *squared*
sample-to-anchor distance, our sigma^2.
On l labelled samples (kernel matrix ``Kl`` of shape (l, m)) the pairwise label matrix is
``S_ij = +1`` if samples i and j share at least one label, else -1. KSH fits the code inner
products to it, ``min ||B B^T - K S||_F^2`` with ``B = sgn(Kl A)`` (K = n_bits), greedily: with the
residue ``R_0 = K S``, bit k solves

    max_a  sgn(Kl a)^T R_{k-1} sgn(Kl a)

by (1) spectral relaxation — the top generalised eigenvector of ``Kl^T R Kl a = lambda Kl^T Kl a``,
scaled so ``||Kl a||^2 = l`` — then (2) minimising the smooth surrogate
``-phi(Kl a)^T R phi(Kl a)``, ``phi(x) = 2 / (1 + exp(-x)) - 1``, from that start (here with
scipy's L-BFGS, at most ``max_iter`` iterations); of the two solutions the one whose binary code
scores higher is kept (as in the authors' code). Then ``R_k = R_{k-1} - b_k b_k^T``.
Codes: ``code(x) = 1[k(x)^T A > 0]``.

Implementation choices that change no formula: the (l, l) residue is never formed (``S_ij``
depends only on the label vectors of i and j, so ``S v`` goes through the G distinct label
vectors, a G x G product; G is 10 for single-label data; ``b_1..b_k`` are kept as columns). With
``Kl^T Kl = L L^T`` (Cholesky, once), each bit's generalised eigenproblem is the standard one of
``L^-1 Kl^T R Kl L^-T``, and the smooth problem is solved for ``c = L^T a`` on ``Q = Kl L^-T``
(``Kl a = Q c``): the same objective, but well scaled (``|a|`` runs to 1e5 on image features), so
L-BFGS converges in far fewer iterations (the README has the measurement).
"""
from __future__ import annotations

import numpy as np
import scipy.linalg
import scipy.optimize
from threadpoolctl import threadpool_limits

from hashbench.errors import HashbenchError
from hashbench.linalg import fix_signs, label_matrix, sign_bits
from hashbench.method import ClassicHasher
from hashbench.params import Interval
from hashbench.registry import METHODS

_CHUNK = 8192  # rows per block when computing kernel features
_KEEP_BYTES = 2 ** 28  # squared distances of the training set kept between fit's two passes up to this


def _sq_distances(X: np.ndarray, anchors: np.ndarray) -> np.ndarray:
    """Squared Euclidean distances, shape (len(X), len(anchors)), clipped at 0."""
    d2 = (X * X).sum(1)[:, None] - 2.0 * X @ anchors.T + (anchors * anchors).sum(1)[None, :]
    return np.maximum(d2, 0.0)


def _signs(z: np.ndarray) -> np.ndarray:
    return np.where(z > 0, 1.0, -1.0)


class Residue:
    """The residue ``R_k = n_bits * S - sum_j b_j b_j^T`` (l, l) of KSH's greedy fit, as an operator.

    ``S_ij = +1`` if labelled samples i and j share a label, else -1. ``R @ v`` costs a G x G
    product over the G distinct label vectors plus ``2 l k`` for the k bits fitted so far.
    """

    def __init__(self, labels: np.ndarray, n_bits: int):
        groups, inverse = np.unique(labels, axis=0, return_inverse=True)
        self.group = inverse.ravel()
        self.n_groups = len(groups)
        self.group_S = n_bits * np.where(groups @ groups.T > 0, 1.0, -1.0)   # (G, G)
        self.bits = np.empty((n_bits, len(labels)))                             # b_1..b_k as rows
        self.k = 0

    def __matmul__(self, v: np.ndarray) -> np.ndarray:
        out = (self.group_S @ np.bincount(self.group, weights=v, minlength=self.n_groups))[self.group]
        if self.k:
            B = self.bits[:self.k]
            out -= B.T @ (B @ v)
        return out

    def project(self, K: np.ndarray) -> np.ndarray:
        """``K^T R K`` for ``K`` (l, m)."""
        sums = np.zeros((self.n_groups, K.shape[1]))
        np.add.at(sums, self.group, K)
        KtB = K.T @ self.bits[:self.k].T
        return sums.T @ self.group_S @ sums - KtB @ KtB.T

    def subtract(self, b: np.ndarray) -> None:
        """``R <- R - b b^T``."""
        self.bits[self.k] = b
        self.k += 1


def smooth_objective(a: np.ndarray, K: np.ndarray, R) -> tuple[float, np.ndarray]:
    """KSH's smoothed objective for one bit and its gradient.

    ``f(a) = -phi(K a)^T R phi(K a) / l^2`` with ``phi(x) = 2 / (1 + exp(-x)) - 1 = tanh(x / 2)``,
    for coefficients ``a`` (m,), kernel features ``K`` (l, m) and symmetric residue ``R`` (l, l),
    a matrix or a :class:`Residue`.
    Since ``phi' = (1 - phi^2) / 2``, ``grad f = -K^T ((R phi) * (1 - phi^2)) / l^2``.
    """
    l = len(K)
    phi = np.tanh(0.5 * (K @ a))
    r_phi = R @ phi
    value = -(phi @ r_phi) / l ** 2
    grad = -(K.T @ (r_phi * (1.0 - phi * phi))) / l ** 2
    return float(value), grad


@METHODS.register_module(name="ksh")
class KSH(ClassicHasher):
    """KSH: RBF features on anchors, bits fitted one by one to pairwise labels (Liu et al. 2012).

    Parameters
    ----------
    n_bits : int
        Code length K.
    n_anchors : int, default=300
        Number m of anchors, drawn without replacement from the training samples (the paper's
        300). With fewer training samples, all of them are anchors.
    n_labeled : int, default=1000
        Number l of labelled samples the hash functions are fitted on, drawn without replacement
        (the paper's 1000 for CIFAR-10). With fewer training samples, all of them are used.
    max_iter : int, default=100
        Iterations of the smooth optimisation of each bit (hashbench's choice; the paper runs
        gradient descent to convergence).
    random_state : int or None
        Seed of the anchor and labelled-sample draws.

    Attributes
    ----------
    anchors_ : ndarray of shape (n_anchors_used, n_features)
        The anchors.
    sigma_ : float
        RBF bandwidth: root mean squared Euclidean distance from training samples to anchors.
    kernel_mean_ : ndarray of shape (n_anchors_used,)
        Training mean of the raw kernel features, subtracted to make them zero-mean.
    labeled_index_ : ndarray of shape (n_labeled_used,)
        Rows of the training set used as labelled samples.
    projection_ : ndarray of shape (n_anchors_used, n_bits)
        Coefficients A: codes are ``1[kernel_features(x) @ projection_ > 0]``.
    n_features_in_ : int
        Number of features seen in ``fit``.

    References
    ----------
    Liu, Wang, Ji, Jiang & Chang, "Supervised Hashing with Kernels", CVPR 2012.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> X, y = rng.normal(size=(400, 16)), rng.integers(0, 4, size=400)
    >>> KSH(8, n_anchors=50, n_labeled=200, random_state=0).fit(X, y).encode(X).shape
    (400, 8)
    """

    supervised = True
    _parameter_constraints = {"n_anchors": [Interval(int, 1, None)], "n_labeled": [Interval(int, 1, None)],
                              "max_iter": [Interval(int, 1, None)]}

    def __init__(self, n_bits: int, *, n_anchors: int = 300, n_labeled: int = 1000,
                 max_iter: int = 100, random_state: int | None = None):
        super().__init__(n_bits, random_state=random_state)
        self.n_anchors = n_anchors
        self.n_labeled = n_labeled
        self.max_iter = max_iter

    def kernel_features(self, X: np.ndarray) -> np.ndarray:
        """Zero-mean RBF features of ``X`` (n, d) against the anchors: shape (n, n_anchors_used)."""
        return self._raw_kernel(np.asarray(self._check_encode_input(X), dtype=np.float64)) - self.kernel_mean_

    def _raw_kernel(self, X: np.ndarray) -> np.ndarray:
        """``exp(-||x - a_j||^2 / (2 sigma^2))`` for rows of ``X`` (n, d) and anchors: shape (n, m)."""
        out = np.empty((len(X), len(self.anchors_)))
        for start in range(0, len(X), _CHUNK):
            out[start:start + _CHUNK] = np.exp(
                -_sq_distances(X[start:start + _CHUNK], self.anchors_) / (2.0 * self.sigma_ ** 2))
        return out

    def fit(self, X: np.ndarray, Y: np.ndarray | None = None) -> "KSH":
        """Learn anchors, bandwidth and K hash functions from ``X`` (n, d), labels ``Y`` (n, C) or (n,)."""
        X, Y = self._check_fit_input(X, Y)
        Y = label_matrix(Y, "KSH")
        n = len(X)
        rng = np.random.default_rng(self.random_state)
        self.anchors_ = X[rng.choice(n, size=min(self.n_anchors, n), replace=False)]
        self.labeled_index_ = np.sort(rng.choice(n, size=min(self.n_labeled, n), replace=False))

        # Two passes over row blocks (bandwidth, then kernel mean): the squared distances are
        # kept between them up to _KEEP_BYTES, else computed again, so memory stays O(block x m).
        m = len(self.anchors_)
        blocks = [slice(start, start + _CHUNK) for start in range(0, n, _CHUNK)]
        kept = [] if n * m * 8 <= _KEEP_BYTES else None
        total = 0.0
        for b in blocks:
            d2 = _sq_distances(X[b], self.anchors_)
            total += d2.sum()
            if kept is not None:
                kept.append(d2)
        self.sigma_ = float(np.sqrt(total / (n * m)))
        if not self.sigma_ > 0:
            raise HashbenchError("KSH.fit: all training samples coincide with the anchors (zero bandwidth); "
                                 "it needs rows that differ in at least one feature")
        if kept is not None:
            raw = np.exp(np.concatenate(kept) / (-2.0 * self.sigma_ ** 2))
            self.kernel_mean_ = raw.mean(axis=0)
            K = raw[self.labeled_index_] - self.kernel_mean_                  # (l, m), zero-mean
        else:
            self.kernel_mean_ = sum(self._raw_kernel(X[b]).sum(axis=0) for b in blocks) / n
            K = self._raw_kernel(X[self.labeled_index_]) - self.kernel_mean_

        R = Residue(Y[self.labeled_index_], self.n_bits)              # residue R_0 = K S
        # The greedy loop is thousands of small products (m x m, l-vectors): threaded BLAS only
        # adds synchronisation there, and on a busy machine it makes the loop many times slower.
        with threadpool_limits(limits=1, user_api="blas"):
            self.projection_ = self._greedy_bits(K, R)
        return self

    def _greedy_bits(self, K: np.ndarray, R: Residue) -> np.ndarray:
        """Fit the bits one by one on kernel features ``K`` (l, m) and the residue ``R``."""
        l, m = K.shape
        KtK = K.T @ K
        KtK += (1e-6 * np.trace(KtK) / m + 1e-12) * np.eye(m)       # tiny ridge: KtK may be singular
        # KtK = L L^T once; then the generalised problem of every bit is the standard one of
        # C = L^-1 (K^T R_k K) L^-T, whose top eigenvector v gives a0 = L^-T v (||K a0|| = 1)
        L = scipy.linalg.cholesky(KtK, lower=True)
        C = scipy.linalg.solve_triangular(L, scipy.linalg.solve_triangular(L, R.project(K), lower=True).T,
                                          lower=True)
        # The smooth problem is solved for c = L^T a, on Q = K L^-T (so K a = Q c, Q^T Q ~ I): the
        # same objective, well scaled, where L-BFGS needs fewer iterations than in a (|a| ~ 1e5 here).
        Q = scipy.linalg.solve_triangular(L, K.T, lower=True).T
        A = np.empty((m, self.n_bits))
        for k in range(self.n_bits):
            _, vec = scipy.linalg.eigh(C, subset_by_index=[m - 1, m - 1])
            c0 = np.sqrt(l) * fix_signs(vec.T)[0]                     # ||Q c0||^2 = l
            found = scipy.optimize.minimize(smooth_objective, c0, args=(Q, R), jac=True,
                                            method="L-BFGS-B", options={"maxiter": self.max_iter})
            candidates = [c0, found.x]
            scores = [_signs(Q @ c) @ (R @ _signs(Q @ c)) for c in candidates]
            c = candidates[int(np.argmax(scores))]
            b = _signs(Q @ c)
            R.subtract(b)
            u = Q.T @ b                                              # = L^-1 K^T b
            C -= np.outer(u, u)
            A[:, k] = scipy.linalg.solve_triangular(L, c, lower=True, trans="T")   # a = L^-T c
        return A

    def _encode(self, X: np.ndarray) -> np.ndarray:
        return sign_bits((self._raw_kernel(X) - self.kernel_mean_) @ self.projection_)
