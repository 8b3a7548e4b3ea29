"""``sdh``: supervised discrete hashing — codes that a linear classifier reads, learnt directly as bits.

Reference: Fumin Shen, Chunhua Shen, Wei Liu & Heng Tao Shen, "Supervised Discrete Hashing",
CVPR 2015 (arXiv:1503.01557). Authors' released MATLAB code: ``demo_SDH.m``, ``SDH.m``, ``RRC.m``
(github.com/bd622/DiscretHashing, the SDH.m of its latest revision).

Formula (rows are items: codes B (n, L) in {-1, +1}, labels Y (n, C), classifier W (L, C),
anchor features Phi (n, m + 1), projection P (m + 1, L)):

    min_{B, W, P}  ||Y - B W||_F^2 + lambda ||W||_F^2 + nu ||B - Phi P||_F^2 + nu lambda_F ||P||_F^2,

with the hash function ``h(x) = sgn(P^T phi(x))`` on RBF anchor features

    phi(x) = [exp(-||x - a_1||^2 / (2 sigma^2)), ..., exp(-||x - a_m||^2 / (2 sigma^2)), 1],

anchors ``a_j`` drawn without replacement from the training rows. The last term is the released
code's ridge in the F-step (``RRC(X, B, Fmap.lambda)``); the paper has none (lambda_F = 0), and
its phi has no constant 1 (the released code appends it: ``PhiX = [PhiX, ones(Ntrain,1)]``).
Alternating, each step the exact minimiser over its block with the others fixed:

- G-step (ridge regression of the labels on the codes): ``W = (B^T B + lambda I)^-1 B^T Y``;
- F-step (the hash function, closed form): ``P = (Phi^T Phi + lambda_F I)^-1 Phi^T B``
  (lambda_F = 0: least squares, the paper's ``P = (Phi Phi^T)^-1 Phi B^T`` in its column
  convention; here the minimum-norm solution, which is that where Phi has full column rank);
- B-step (discrete cyclic coordinate descent, DCC): with ``Q = Y W^T + nu Phi P`` and
  ``M = W W^T``, bit k of every item at once, the others fixed, is

      b_k = sgn(q_k - B_{-k} M_{-k,k})     (the paper's z = sgn(q - B'^T W'^T v)),

  the exact minimiser of the objective over column k (``b_k^T b_k = n`` makes the quadratic
  term in b_k constant). Sweeps over k = 1..L repeat until no bit changes (the released code's
  ``norm(B - Z0) < 1e-6 norm(Z0)``), at most ``dcc_iter`` times.

Since every step minimises the objective over its block, the objective never increases (with
``dcc_init="previous"``). Order as in ``SDH.m``: G- and F-step on the initial codes, then
``n_iter`` times B-, G-, F-step; stop early when ``||B - Phi P||_F < tol ||B||_F`` or
``||P - P_prev||_F < tol ||P_prev||_F``. Codes of any item (training items included, the released
``AsymDist = 0``): ``code(x) = 1[phi(x)^T P > 0]``.

Constants (default, source):

- m = 1000 anchors (paper, section 4; ``n_anchors = 1000`` in demo_SDH.m); with fewer training
  rows, all of them are anchors;
- lambda = 1 (paper, section 4; ``gmap.lambda = 1``), nu = 1e-5 (paper, section 4; ``Fmap.nu``);
- lambda_F = 1e-2 (released code, ``Fmap.lambda``; the paper's F-step is unregularised:
  ``lam_f=0``);
- 5 outer iterations (paper, section 4, t = 5; ``maxItr = 5`` in demo_SDH.m);
- at most 10 DCC sweeps per B-step (``for time = 1:10`` in SDH.m);
- tol = 1e-5 (SDH.m's default ``tol``);
- initial codes ``sgn(randn(n, L))`` (demo_SDH.m ``Zinit``), seeded by ``random_state`` (as is
  the anchor draw);
- DCC starts from the current codes (SDH.m's latest revision, which comments out
  ``B = zeros(size(B))``; ``dcc_init="zeros"`` gives the first revision, which restarts each
  B-step from zero codes and so may increase the objective at a B-step);
- the bandwidth: demo_SDH.m fixes ``sigma = 0.4`` for features normalised to unit length
  (``prepare_dataset.m``), and lists two data-driven rules in its comments,
  ``sigma = mean(mean(Dis)).^0.5`` and ``sigma = mean(min(Dis,[],2).^0.5)`` (Dis: squared
  distances to the anchors). Hashbench hashes features of any scale, so the default is the
  first data-driven rule, ``bandwidth="mean"``: sigma = root mean squared training-row-to-anchor
  distance (also KSH's released rule, see ``ksh``); ``bandwidth="nearest"`` is the second (mean
  distance to the nearest anchor), and ``bandwidth=0.4, normalize=True`` is the released run.
  The kernel is the released ``exp(-D / (2 sigma^2))``, not the paper's ``exp(-D / sigma)``.

Labels. The paper regresses a label matrix; SDH.m takes a class-id vector (one-hot encoded) or the
matrix ``Y`` as given. Multi-hot labels (n, C) are used directly as the regression target Y
(``SDH.m``: ``else Y = y``), so items sharing labels get codes the same linear classifier maps to
their label vectors; class ids (n,) are one-hot encoded.

Ties. MATLAB's ``sign(0) = 0`` would leave a 0 in B; here a bit whose DCC value is exactly 0 (both
signs minimise) keeps its previous sign (+1 from zero codes), so B stays in {-1, +1}.
"""
from __future__ import annotations

from typing import Iterator

import numpy as np
import scipy.linalg

from hashbench.errors import HashbenchError
from hashbench.linalg import label_matrix, sign_bits
from hashbench.method import ClassicHasher
from hashbench.params import Flag, Interval, Options
from hashbench.registry import METHODS

_BLOCK_BYTES = 1 << 24          # kernel features are computed in row blocks of at most 16 MiB
_BANDWIDTHS = ("mean", "nearest")
_DCC_INITS = ("previous", "zeros")
_DCC_STOP = 1e-6                # SDH.m: stop the sweeps when norm(B - Z0) < 1e-6 norm(Z0)


# ----------------------------------------------------------------------------- pieces
def sq_distances(X: np.ndarray, anchors: np.ndarray) -> np.ndarray:
    """Squared Euclidean distances (len(X), len(anchors)), clipped at 0."""
    d2 = (X * X).sum(1)[:, None] - 2.0 * X @ anchors.T + (anchors * anchors).sum(1)[None, :]
    return np.maximum(d2, 0.0, out=d2)


def _blocks(n: int, m: int) -> list[slice]:
    rows = max(1, _BLOCK_BYTES // (8 * max(m, 1)))
    return [slice(start, start + rows) for start in range(0, n, rows)]


def unit_rows(X: np.ndarray) -> np.ndarray:
    """Rows scaled to unit Euclidean length (zero rows stay zero), as the authors' ``normalize.m``."""
    norms = np.sqrt((X * X).sum(axis=1, keepdims=True))
    return X / np.where(norms > 0, norms, 1.0)


def rbf_features(X: np.ndarray, anchors: np.ndarray, sigma: float, bias: bool) -> np.ndarray:
    """``[exp(-||x - a_j||^2 / (2 sigma^2))]_j`` (n, m), with a last column of ones if ``bias``."""
    m = len(anchors)
    out = np.empty((len(X), m + int(bias)))
    for b in _blocks(len(X), m):
        out[b, :m] = np.exp(sq_distances(X[b], anchors) / (-2.0 * sigma * sigma))
    if bias:
        out[:, m] = 1.0
    return out


def g_step(B: np.ndarray, Y: np.ndarray, lam: float) -> np.ndarray:
    """The classifier ``W = (B^T B + lam I)^-1 B^T Y`` (L, C): ridge regression of Y on the codes."""
    L = B.shape[1]
    return scipy.linalg.solve(B.T @ B + lam * np.eye(L), B.T @ Y, assume_a="pos")


class FStep:
    """The projection ``P = (Phi^T Phi + lam_f I)^-1 Phi^T B`` for codes B; Phi factorised once.

    With ``lam_f = 0`` the least-squares ``P`` of minimum norm (the paper's closed form where
    ``Phi^T Phi`` is invertible)."""

    def __init__(self, Phi: np.ndarray, lam_f: float):
        self.Phi = Phi
        self.lam_f = lam_f
        if lam_f > 0:
            gram = Phi.T @ Phi
            gram[np.diag_indices_from(gram)] += lam_f
            self.factor = scipy.linalg.cho_factor(gram, lower=True)
        else:  # the pseudo-inverse once, from the SVD; singular values below rounding noise dropped
            U, s, Vt = scipy.linalg.svd(Phi, full_matrices=False)
            keep = s > s.max(initial=0.0) * max(Phi.shape) * np.finfo(np.float64).eps
            self.U, self.s_inv, self.Vt = U[:, keep], 1.0 / s[keep], Vt[keep]

    def __call__(self, B: np.ndarray) -> np.ndarray:
        if self.lam_f > 0:
            return scipy.linalg.cho_solve(self.factor, self.Phi.T @ B)
        return self.Vt.T @ (self.s_inv[:, None] * (self.U.T @ B))


def dcc_bit(B: np.ndarray, Q: np.ndarray, M: np.ndarray, k: int) -> np.ndarray:
    """Column k of the codes that minimises the objective with the other columns of ``B`` fixed.

    ``b_k = sgn(q_k - B_{-k} M_{-k,k})`` with ``M = W W^T``; an exact 0 keeps the previous sign
    (+1 where it was 0)."""
    r = Q[:, k] - B @ M[:, k] + B[:, k] * M[k, k]
    keep = np.where(B[:, k] < 0, -1.0, 1.0)
    return np.where(r > 0, 1.0, np.where(r < 0, -1.0, keep))


def b_step(B: np.ndarray, Q: np.ndarray, W: np.ndarray, max_sweeps: int, init: str = "previous") -> np.ndarray:
    """DCC: sweeps of :func:`dcc_bit` over the bits until none changes (at most ``max_sweeps``).

    Starts from ``B`` (``init="previous"``) or from zero codes (``"zeros"``). Returns new codes."""
    M = W @ W.T
    B = np.zeros_like(B, dtype=np.float64) if init == "zeros" else np.array(B, dtype=np.float64)
    for _ in range(max_sweeps):
        before = B.copy()
        for k in range(B.shape[1]):
            B[:, k] = dcc_bit(B, Q, M, k)
        if np.linalg.norm(B - before) < _DCC_STOP * np.linalg.norm(before):
            break
    return B


def objective(Y, B, W, Phi, P, *, lam: float, nu: float, lam_f: float = 0.0) -> float:
    """``||Y - B W||^2 + lam ||W||^2 + nu ||B - Phi P||^2 + nu lam_f ||P||^2`` (Frobenius norms)."""
    return float(np.sum((Y - B @ W) ** 2) + lam * np.sum(W * W) + nu * np.sum((B - Phi @ P) ** 2)
                 + nu * lam_f * np.sum(P * P))


def alternate(Phi: np.ndarray, Y: np.ndarray, B0: np.ndarray, *, lam: float, nu: float, lam_f: float,
              n_iter: int, dcc_iter: int, tol: float, dcc_init: str = "previous",
              ) -> Iterator[tuple[str, np.ndarray, np.ndarray, np.ndarray]]:
    """SDH's alternation, as SDH.m: yields ``(step, B, W, P)`` after every step.

    Steps: ``"G"`` and ``"F"`` on the initial codes ``B0``, then per iteration ``"B"``, ``"G"``,
    ``"F"``; stops after ``n_iter`` iterations or when ``||B - Phi P|| < tol ||B||`` or
    ``||P - P_prev|| < tol ||P_prev||`` after an F-step. ``B0`` is not modified."""
    f_step = FStep(Phi, lam_f)
    B = np.array(B0, dtype=np.float64)
    W = g_step(B, Y, lam)
    yield "G", B, W, None
    P = f_step(B)
    yield "F", B, W, P
    for _ in range(n_iter):
        B = b_step(B, Y @ W.T + nu * (Phi @ P), W, dcc_iter, dcc_init)
        yield "B", B, W, P
        W = g_step(B, Y, lam)
        yield "G", B, W, P
        P_prev, P = P, f_step(B)
        yield "F", B, W, P
        if (np.linalg.norm(B - Phi @ P) < tol * np.linalg.norm(B)
                or np.linalg.norm(P - P_prev) < tol * np.linalg.norm(P_prev)):
            return


# ----------------------------------------------------------------------------- estimator
@METHODS.register_module(name="sdh")
class SDH(ClassicHasher):
    """Supervised Discrete Hashing (CVPR 2015): RBF-anchor hash function, codes a linear classifier reads, DCC.

    Parameters
    ----------
    n_bits : int
        Code length L.
    n_anchors : int, default=1000
        Number m of RBF anchors, drawn without replacement from the training rows (paper and
        released code: 1000). With fewer training rows, all of them are anchors.
    bandwidth : {"mean", "nearest"} or float, default="mean"
        RBF width sigma: ``"mean"`` the root mean squared training-row-to-anchor distance,
        ``"nearest"`` the mean distance of a training row to its nearest anchor (the two rules in
        demo_SDH.m's comments), or a fixed positive value (demo_SDH.m: 0.4, for unit-length rows).
    normalize : bool, default=False
        Scale every row to unit length before anything else (the authors' ``prepare_dataset.m``;
        hashbench's other classic methods hash the features as given, so off by default).
    bias : bool, default=True
        Append a constant 1 to the anchor features (released code; the paper's phi has none).
    lam : float, default=1.0
        lambda, the ridge of the classifier W (paper and released ``gmap.lambda``).
    nu : float, default=1e-5
        nu, the weight of the hash-function fit ``||B - Phi P||^2`` (paper and ``Fmap.nu``).
    lam_f : float, default=1e-2
        lambda_F, the ridge of the F-step (released ``Fmap.lambda``; 0 is the paper's
        unregularised least squares).
    n_iter : int, default=5
        Outer iterations (paper's t = 5; demo_SDH.m ``maxItr = 5``).
    dcc_iter : int, default=10
        Most DCC sweeps per B-step (SDH.m).
    tol : float, default=1e-5
        Early-stopping tolerance (SDH.m's default; 0: always ``n_iter`` iterations).
    dcc_init : {"previous", "zeros"}, default="previous"
        Where each B-step's DCC starts: the current codes (SDH.m's latest revision) or zero
        codes (its first revision).
    random_state : int or None
        Seed of the anchor draw and the initial codes.

    Attributes
    ----------
    anchors_ : ndarray of shape (n_anchors_used, n_features)
        The anchors (after ``normalize``, if set).
    sigma_ : float
        RBF bandwidth.
    projection_ : ndarray of shape (n_anchors_used + bias, n_bits)
        P: codes are ``1[kernel_features(x) @ projection_ > 0]``.
    classifier_ : ndarray of shape (n_bits, n_labels)
        W, the linear classifier on the training codes.
    train_codes_ : ndarray of shape (n_train, n_bits), uint8
        The learnt discrete codes B of the training rows (1 where b = +1).
    objective_ : list of float
        The objective (with the lambda_F term) after the initial F-step and after every B-, G-
        and F-step; non-increasing with ``dcc_init="previous"``.
    n_iter_ : int
        Outer iterations run (fewer than ``n_iter`` if stopped early).
    n_features_in_ : int
        Number of features seen in ``fit``.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> X, y = rng.normal(size=(400, 16)), rng.integers(0, 4, size=400)
    >>> SDH(8, n_anchors=100, random_state=0).fit(X, y).encode(X).shape
    (400, 8)
    """

    supervised = True
    _parameter_constraints = {
        "n_anchors": [Interval(int, 1, None)],
        "bandwidth": [Options(*_BANDWIDTHS), Interval(float, 0, None, closed="neither")],
        "normalize": [Flag()], "bias": [Flag()],
        "lam": [Interval(float, 0, None, closed="neither")],
        "nu": [Interval(float, 0, None, closed="neither")],
        "lam_f": [Interval(float, 0, None)],
        "n_iter": [Interval(int, 1, None)], "dcc_iter": [Interval(int, 1, None)],
        "tol": [Interval(float, 0, None)],
        "dcc_init": [Options(*_DCC_INITS)],
    }

    def __init__(self, n_bits: int, *, n_anchors: int = 1000, bandwidth: str | float = "mean",
                 normalize: bool = False, bias: bool = True, lam: float = 1.0, nu: float = 1e-5,
                 lam_f: float = 1e-2, n_iter: int = 5, dcc_iter: int = 10, tol: float = 1e-5,
                 dcc_init: str = "previous", random_state: int | None = None):
        super().__init__(n_bits, random_state=random_state)
        self.n_anchors = n_anchors
        self.bandwidth = bandwidth
        self.normalize = normalize
        self.bias = bias
        self.lam = lam
        self.nu = nu
        self.lam_f = lam_f
        self.n_iter = n_iter
        self.dcc_iter = dcc_iter
        self.tol = tol
        self.dcc_init = dcc_init

    def kernel_features(self, X: np.ndarray) -> np.ndarray:
        """phi(X): RBF values against the anchors (and the constant 1 if ``bias``), (n, m [+ 1])."""
        X = np.asarray(self._check_encode_input(X), dtype=np.float64)
        return rbf_features(unit_rows(X) if self.normalize else X, self.anchors_, self.sigma_, self.bias)

    def fit(self, X: np.ndarray, Y: np.ndarray | None = None) -> "SDH":
        """Learn anchors, bandwidth, classifier and projection from ``X`` (n, d), labels ``Y`` (n, C) or (n,)."""
        X, Y = self._check_fit_input(X, Y)
        Y = label_matrix(Y, "SDH")
        if self.normalize:
            X = unit_rows(X)
        n = len(X)
        rng = np.random.default_rng(self.random_state)
        self.anchors_ = X[rng.choice(n, size=min(self.n_anchors, n), replace=False)]
        m = len(self.anchors_)

        # squared distances into the feature buffer, the bandwidth from them, then exp in place
        Phi = np.empty((n, m + int(self.bias)))
        for b in _blocks(n, m):
            Phi[b, :m] = sq_distances(X[b], self.anchors_)
        D2 = Phi[:, :m]
        if self.bandwidth == "mean":
            sigma = float(np.sqrt(D2.mean()))
        elif self.bandwidth == "nearest":
            # the nearest anchor's distance recomputed from the difference: the expansion above
            # leaves rounding noise (~1e-8 after the root) where a row is its own anchor
            nearest = self.anchors_[D2.argmin(axis=1)]
            sigma = float(np.sqrt(((X - nearest) ** 2).sum(axis=1)).mean())
            del nearest
        else:
            sigma = float(self.bandwidth)
        if not sigma > 0:
            where = "its nearest anchor" if self.bandwidth == "nearest" else "every anchor"
            raise HashbenchError(
                f"SDH.fit: bandwidth={self.bandwidth!r} gives sigma = 0 on these {n} training rows (each "
                f"row is at distance 0 from {where}); use bandwidth='mean', a positive number, or more "
                "training rows than n_anchors")
        self.sigma_ = sigma
        np.multiply(D2, -0.5 / sigma ** 2, out=D2)
        np.exp(D2, out=D2)
        if self.bias:
            Phi[:, m] = 1.0

        B0 = np.where(rng.standard_normal((n, self.n_bits)) >= 0, 1.0, -1.0)
        params = dict(lam=self.lam, nu=self.nu, lam_f=self.lam_f)
        self.objective_, self.n_iter_ = [], 0
        for step, B, W, P in alternate(Phi, Y, B0, n_iter=self.n_iter, dcc_iter=self.dcc_iter, tol=self.tol,
                                       dcc_init=self.dcc_init, **params):
            if P is not None:
                self.objective_.append(objective(Y, B, W, Phi, P, **params))
            self.n_iter_ += step == "B"
        self.projection_ = P
        self.classifier_ = W
        self.train_codes_ = (B > 0).astype(np.uint8)
        return self

    def _encode(self, X: np.ndarray) -> np.ndarray:
        if self.normalize:
            X = unit_rows(X)
        out = np.empty((len(X), self.n_bits), dtype=np.uint8)
        for b in _blocks(len(X), len(self.anchors_)):
            out[b] = sign_bits(rbf_features(X[b], self.anchors_, self.sigma_, self.bias) @ self.projection_)
        return out
