"""The two kinds of hashing method, and what the runner expects of each.

- :class:`ClassicHasher` — an estimator on fixed features (scikit-learn style):
  ``fit(X, Y=None)`` learns, ``encode(X)`` returns codes. The runner feeds it features of a
  frozen backbone (or the dataset's own features).
- :class:`DeepMethod` — a loss on relaxed codes plus how the hash layer reads the backbone; the
  shared trainer (:mod:`hashbench.train`) does the rest end to end.

Codes returned by any method are ``uint8`` arrays of shape (n, bits) with values in {0, 1}.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from hashbench.errors import HashbenchError


class ClassicHasher:
    """Base class of estimator-style hashers.

    ``__init__`` only stores parameters; ``fit`` sets attributes ending in ``_`` and returns
    ``self``; ``encode`` checks the hasher is fitted and that the feature count matches.

    Parameters
    ----------
    n_bits : int
        Code length K.
    random_state : int or None
        Seed of every random choice the method makes.
    """

    supervised = False

    def __init__(self, n_bits: int, *, random_state: int | None = None):
        self.n_bits = n_bits
        self.random_state = random_state

    def fit(self, X: np.ndarray, Y: np.ndarray | None = None) -> "ClassicHasher":
        """Learn the hash functions from features ``X`` (n, d) and, if supervised, labels ``Y`` (n, C)."""
        raise NotImplementedError

    def encode(self, X: np.ndarray) -> np.ndarray:
        """Codes of ``X`` (n, d): ``uint8`` of shape (n, n_bits), values in {0, 1}."""
        raise NotImplementedError

    # -- helpers for subclasses -------------------------------------------------------------
    def _check_fit_input(self, X: np.ndarray, Y: np.ndarray | None = None):
        X = np.asarray(X, dtype=np.float64)
        if X.ndim != 2:
            raise HashbenchError(f"{type(self).__name__}.fit expects X of shape (n, d); got {X.shape}")
        if not 0 < self.n_bits <= 1024:
            raise HashbenchError(f"{type(self).__name__}: n_bits must be in 1..1024; got {self.n_bits}")
        if self.supervised and Y is None:
            raise HashbenchError(f"{type(self).__name__} is supervised: fit(X, Y) needs labels Y")
        if Y is not None:
            Y = np.asarray(Y)
            if len(Y) != len(X):
                raise HashbenchError(f"{type(self).__name__}.fit: {len(X)} rows in X but {len(Y)} in Y")
        self.n_features_in_ = X.shape[1]
        return X, Y

    def _check_encode_input(self, X: np.ndarray) -> np.ndarray:
        if not hasattr(self, "n_features_in_"):
            raise HashbenchError(f"{type(self).__name__} is not fitted yet: call fit(X) before encode(X)")
        X = np.asarray(X, dtype=np.float64)
        if X.ndim != 2 or X.shape[1] != self.n_features_in_:
            raise HashbenchError(
                f"{type(self).__name__}.encode: expected X of shape (n, {self.n_features_in_}); got {X.shape}")
        return X

    def get_params(self) -> dict[str, Any]:
        import inspect

        names = [p for p in inspect.signature(type(self).__init__).parameters if p != "self"]
        return {n: getattr(self, n) for n in names if hasattr(self, n)}


def sign_bits(values: np.ndarray) -> np.ndarray:
    """{0,1} codes from real projections: bit = 1 where the value is > 0."""
    return (np.asarray(values) > 0).astype(np.uint8)


class DeepMethod:
    """Base class of deep methods: a loss on relaxed codes, and how the hash layer is built.

    Subclasses pass their loss (an ``nn.Module`` from ``LOSSES``, or its config dict) and may
    override :meth:`relax` (e.g. HashNet's continuation) or the optimisation defaults.

    Parameters
    ----------
    n_bits : int
        Code length K.
    loss : nn.Module or dict
        Called as ``loss(codes, labels)`` with relaxed codes (B, K) in (-1, 1) and multi-hot labels
        (B, C); returns a dict with a scalar ``loss`` and named terms for logging.
    relaxation : {"sigmoid", "tanh", "identity"}
        How pre-activations z become relaxed codes b: ``2*sigmoid(z) - 1``, ``tanh(z)``, or z itself
        (the real-valued outputs of DPSH, DSH, DTSH, whose losses pull them towards ±1).
    bypass : bool
        Whether the hash layer also reads a lower backbone stage (DSRH's bypass connection).
    lr_mult : dict
        Learning-rate multipliers of the parameter groups ``backbone``, ``head``, ``head_lower``,
        ``head_bias`` (see :meth:`hashbench.model.DeepHasher.param_groups`).
    head_lr_drop : float or None
        Fraction of training after which the hash layer's learning rates drop ×10 (None: never).
    """

    RELAXATIONS = ("sigmoid", "tanh", "identity")

    def __init__(self, n_bits: int, *, loss, relaxation: str = "sigmoid", bypass: bool = True,
                 lr_mult: dict | None = None, head_lr_drop: float | None = None):
        from hashbench.registry import LOSSES, build

        if relaxation not in self.RELAXATIONS:
            raise HashbenchError(f"unknown relaxation {relaxation!r}; valid: {', '.join(self.RELAXATIONS)}")
        self.n_bits = n_bits
        self.loss = build(LOSSES, loss)
        self.relaxation = relaxation
        self.bypass = bypass
        self.lr_mult = dict(lr_mult or {})
        self.head_lr_drop = head_lr_drop

    def relax(self, z, progress: float):
        """Relaxed codes in (-1, 1) from pre-activations ``z`` (B, K); ``progress`` in [0, 1]."""
        import torch

        if self.relaxation == "sigmoid":
            return 2 * torch.sigmoid(z) - 1
        return torch.tanh(z) if self.relaxation == "tanh" else z
