"""The two kinds of hashing method, and everything the trainer and the runner may ask of each.

- :class:`ClassicHasher` — a scikit-learn estimator on fixed features: ``fit(X, Y=None)`` learns,
  ``encode(X)`` returns codes. The runner feeds it features of a frozen backbone (or the
  dataset's own features).
- :class:`DeepMethod` — a loss on relaxed codes plus a few hooks; the shared trainer
  (:mod:`hashbench.train`) does the rest end to end and calls nothing but these hooks.

Variants of a method (the same class with some arguments filled in) are registered with
:func:`variant`, the one mechanism for every variant.

Codes returned by any method are ``uint8`` arrays of shape (n, bits) with values in {0, 1}.
"""
from __future__ import annotations

import functools
import inspect
from typing import Any, Callable

import numpy as np
import torch
from sklearn.base import BaseEstimator
from torch import nn

from hashbench.errors import HashbenchError
from hashbench.params import Flag, Interval, Options, check_params

N_BITS = [Interval(int, 1, 1024)]
SEED = [Interval(int, 0, 2**32 - 1), None]
# What a method's loss compares; ``hashbench list methods`` groups by it ("other": a plugin that says nothing).
FAMILIES = ("pairwise", "triplet", "pointwise", "listwise", "classic", "baseline", "other")


# ---------------------------------------------------------------------------------- classic
class ClassicHasher(BaseEstimator):
    """Base class of estimator-style hashers (scikit-learn's ``BaseEstimator``: ``get_params``,
    ``set_params``, ``clone`` and ``repr`` come with it).

    ``__init__`` only stores parameters; ``fit`` checks them against ``_parameter_constraints``
    (see :mod:`hashbench.params`), sets attributes ending in ``_`` and returns ``self``; ``encode``
    checks the hasher is fitted and that the feature count matches.

    Encoding works in row chunks: the public :meth:`encode` checks ``X`` once, then hands the
    subclass's ``_encode`` one float64 chunk of rows at a time (``encode_chunk_rows``; by default
    as many as fill 8 MiB), so
    encoding a database costs its codes plus one chunk of memory, not a float64 copy of it.
    ``X`` may be any array-like, a read-only memory map included; it is never written.

    Degenerate training data (one policy for every method that learns from its features, checked
    by ``_check_fit_input`` before any work):

    - fewer than 2 training rows are refused: no mean, spread or direction can be learnt from one;
    - training rows that are all identical (every feature constant) are refused: every method
      would give every item the same code;
    - features that are constant while others vary are fine (they carry no information and get no
      weight);
    - a method that needs more directions of variance than the centred data has (``pcah`` and
      ``itq`` need ``n_bits``) refuses too, naming the rank found (``_check_rank``).

    Each refusal is one line: ``<Method>.fit: <what was wrong>; <what is valid>``. ``lsh`` opts
    out (``degenerate=False``): its random hyperplanes do not depend on the data, which only place
    them (the mean), so they hash new items the same way whatever the training rows were.

    Class attributes: ``family`` (see :data:`FAMILIES`), ``supervised`` (``fit`` needs labels), ``needs_features`` (False for a method
    that ignores its input, such as ``random``: the runner then extracts nothing; it skips the
    degenerate-data policy too), ``bits_within_features`` (``n_bits`` at most the feature count,
    checked before the data), ``encode_chunk_rows`` (rows per ``_encode`` call).

    Parameters
    ----------
    n_bits : int
        Code length K.
    random_state : int or None
        Seed of every random choice the method makes.
    """

    family = "classic"
    supervised = False
    needs_features = True
    bits_within_features = False  # one bit per direction of the feature space: n_bits <= d
    encode_chunk_rows: int | None = None  # rows per _encode call; None: 8 MiB of float64 rows
    _ENCODE_CHUNK_BYTES = 8 << 20  # a few such temporaries per chunk stay small next to a database;
    # 512 rows of 2048-D still make a BLAS-efficient product, and 400 chunks cost no Python time
    _parameter_constraints: dict = {"n_bits": N_BITS, "random_state": SEED}

    def __init__(self, n_bits: int, *, random_state: int | None = None):
        self.n_bits = n_bits
        self.random_state = random_state

    def fit(self, X: np.ndarray, Y: np.ndarray | None = None) -> "ClassicHasher":
        """Learn the hash functions from features ``X`` (n, d) and, if supervised, labels ``Y`` (n, C)."""
        raise NotImplementedError

    def encode(self, X: np.ndarray) -> np.ndarray:
        """Codes of ``X`` (n, d): ``uint8`` of shape (n, n_bits), values in {0, 1}."""
        X = self._check_encode_input(X)
        out = np.empty((len(X), self.n_bits), dtype=np.uint8)
        step = self.encode_chunk_rows or self._ENCODE_CHUNK_BYTES // max(1, 8 * X.shape[1])
        step = max(1, int(step))
        for start in range(0, len(X), step):
            out[start:start + step] = self._encode(np.asarray(X[start:start + step], dtype=np.float64))
        return out

    def _encode(self, X: np.ndarray) -> np.ndarray:
        """Codes of one float64 chunk ``X`` (m, d), already checked: ``uint8`` (m, n_bits)."""
        raise NotImplementedError

    # -- helpers for subclasses -------------------------------------------------------------
    def _validate_params(self) -> None:
        """Check every parameter against the declared constraints (one-line error naming it)."""
        checked = check_params(type(self).__name__, type(self), self.get_params(deep=False))
        for name, value in checked.items():
            setattr(self, name, value)

    def _check_fit_input(self, X: np.ndarray, Y: np.ndarray | None = None, *, degenerate: bool = True):
        """``X`` as float64 (n, d) and ``Y`` as an array, checked; ``degenerate=False`` skips the
        degenerate-data policy (for a method that learns nothing from the values of ``X``)."""
        self._validate_params()
        who = type(self).__name__
        X = np.asarray(X, dtype=np.float64)
        if X.ndim != 2:
            raise HashbenchError(f"{who}.fit expects X of shape (n, d); got {X.shape}")
        if self.supervised and Y is None:
            raise HashbenchError(f"{who} is supervised: fit(X, Y) needs labels Y")
        if Y is not None:
            Y = np.asarray(Y)
            if len(Y) != len(X):
                raise HashbenchError(f"{who}.fit: {len(X)} rows in X but {len(Y)} in Y")
        if self.bits_within_features and self.n_bits > X.shape[1]:
            # before the data checks: a code longer than the feature count is wrong for any data
            raise HashbenchError(
                f"{who}: n_bits must be at most the number of features ({X.shape[1]}); got {self.n_bits}")
        if degenerate and self.needs_features:
            if len(X) < 2:
                raise HashbenchError(f"{who}.fit: got {len(X)} training row{'' if len(X) == 1 else 's'}; "
                                     "it needs at least 2 distinct rows to learn from")
            if X.shape[1] and not np.any(X.max(axis=0) > X.min(axis=0)):
                raise HashbenchError(f"{who}.fit: all {len(X)} training rows are identical (every feature "
                                     "is constant), so every item would get the same code; it needs rows "
                                     "that differ in at least one feature")
        self.n_features_in_ = X.shape[1]
        return X, Y

    def _check_rank(self, variances: np.ndarray, n_rows: int, needed: int) -> None:
        """Refuse centred training data with fewer than ``needed`` directions of variance.

        ``variances`` are the leading covariance eigenvalues (decreasing). Eigenvalues below
        ``largest * max(n, d) * eps`` are rounding noise of the covariance product, as in
        ``numpy.linalg.matrix_rank``: a bit on such a direction would be the sign of noise.
        """
        variances = np.asarray(variances, dtype=np.float64)
        tol = variances.max(initial=0.0) * max(n_rows, self.n_features_in_) * np.finfo(np.float64).eps
        rank = int(np.sum(variances > tol))
        if rank < needed:
            raise HashbenchError(
                f"{type(self).__name__}.fit: the centred training data have only {rank} direction"
                f"{'' if rank == 1 else 's'} of variance ({n_rows} rows x {self.n_features_in_} features), "
                f"fewer than n_bits={needed}; use at most {rank} bits or more varied training rows")

    def _check_encode_input(self, X: np.ndarray) -> np.ndarray:
        """``X`` checked against the fitted feature count, with its dtype and memory as given (no copy)."""
        if not hasattr(self, "n_features_in_"):
            raise HashbenchError(f"{type(self).__name__} is not fitted yet: call fit(X) before encode(X)")
        X = np.asarray(X)  # a view of an ndarray, memory map or CPU tensor, not a copy
        if X.dtype.kind not in "biuf":
            X = np.asarray(X, dtype=np.float64)
        if X.ndim != 2 or X.shape[1] != self.n_features_in_:
            raise HashbenchError(
                f"{type(self).__name__}.encode: expected X of shape (n, {self.n_features_in_}); got {X.shape}")
        return X


# ---------------------------------------------------------------------------------- deep
class DeepMethod(nn.Module):
    """Base class of deep methods: a loss on relaxed codes, how the hash layer reads the backbone,
    and the hooks the trainer calls — all of them, in this order:

    ===========================================  ===================================================
    ``batches(split, seed=)``                     how training batches are drawn (a
                                                  :class:`~hashbench.sampling.BatchSource`; default:
                                                  shuffled images, each with its row)
    ``begin(split)``                              once, before training or resuming: allocate state
                                                  (default: the loss's :meth:`~hashbench.losses.HashLoss.begin`)
    ``on_epoch_start(epoch, epochs)``             before each epoch (0-based ``epoch``)
    ``relax(z, progress)``                        each step: pre-activations (B, K) → relaxed codes
    ``compute_loss(codes, labels, indices,        each step, on the global batch: the loss's dict
    tuples)``
    ``on_epoch_end(epoch, epochs)``               after each epoch (e.g. update learned database codes)
    ``encode(name, split, network)``              after training, for ``query`` and ``database``
    ===========================================  ===================================================

    Class attributes: ``family`` (see :data:`FAMILIES`: what the loss compares — pairs, triplets,
    each item with a target, or whole rankings) and ``code_norm`` (None, or ``"batch"``: the
    network batch-normalises its K outputs before they are relaxed and, with the running
    statistics, before they are thresholded at encoding — for methods whose paper does so).

    State kept across steps (a memory bank, class centres, database codes) is this module's own
    buffers and parameters (its loss's included): moved to the training device, written into
    every checkpoint and restored on resume. Its parameters are trained with the network; their
    full names start with ``method.`` (e.g. ``method.loss.centres``) for ``lr_mult`` patterns.

    Parameters
    ----------
    n_bits : int
        Code length K.
    loss : dict or HashLoss
        A ``LOSSES`` config (``dict(type=NAME, ...)``) or a built loss; called as described in
        :mod:`hashbench.losses`.
    relaxation : {"sigmoid", "tanh", "identity"}
        How pre-activations z become relaxed codes b: ``2*sigmoid(z) - 1``, ``tanh(z)``, or z itself
        (the real-valued outputs of DPSH, DSH, DTSH, whose losses pull them towards ±1).
    bypass : bool
        Whether the hash layer also reads a lower backbone stage (DSRH's bypass connection).
    lr_mult : dict or None
        Learning-rate (and weight-decay) multipliers by parameter-name pattern, matched as
        mmengine's ``custom_keys`` (see :mod:`hashbench.optim`).
    head_lr_drop : float or None
        Fraction of training after which the rates of every parameter outside the backbone (the
        hash layer, the method's own) drop ×10 (None: never).
    dropout : float
        Dropout on the final feature before the hash layer (DSRH's released network: 0.5 on fc7).
    head_init : dict or None
        The hash layer's initialisation: None, PyTorch's ``nn.Linear`` default; or
        ``dict(std=s, bias=c)``, weights N(0, s²) on both branches and the constant bias c (DSRH's
        released config: std 0.01, bias 1).
    """

    RELAXATIONS = ("sigmoid", "tanh", "identity")
    family = "other"
    code_norm: str | None = None
    _parameter_constraints: dict = {
        "n_bits": N_BITS, "loss": [dict, nn.Module], "relaxation": [Options(*RELAXATIONS)], "bypass": [Flag()],
        "lr_mult": [dict, None], "head_lr_drop": [Interval(float, 0, 1), None],
        "dropout": [Interval(float, 0, 1, closed="left")], "head_init": [dict, None],
    }

    def __init__(self, n_bits: int, *, loss, relaxation: str = "sigmoid", bypass: bool = True,
                 lr_mult: dict | None = None, head_lr_drop: float | None = None, dropout: float = 0.0,
                 head_init: dict | None = None):
        from hashbench.registry import LOSSES, build

        super().__init__()
        if relaxation not in self.RELAXATIONS:
            raise HashbenchError(f"unknown relaxation {relaxation!r}; valid: {', '.join(self.RELAXATIONS)}")
        self.n_bits = n_bits
        self.loss = build(LOSSES, loss)
        self.relaxation = relaxation
        self.bypass = bypass
        self.lr_mult = dict(lr_mult or {})
        self.head_lr_drop = head_lr_drop
        if head_init is not None and (set(head_init) != {"std", "bias"} or not all(
                isinstance(v, (int, float)) and not isinstance(v, bool) for v in head_init.values())
                or head_init["std"] <= 0):
            raise HashbenchError(f"head_init must be None or dict(std=S, bias=C) with numbers, S > 0; got {head_init!r}")
        self.dropout, self.head_init = float(dropout), head_init

    # -- training data ---------------------------------------------------------------------
    def batches(self, split, *, seed: int):
        """How training batches are drawn from ``split``: a :class:`~hashbench.sampling.BatchSource`."""
        from hashbench.sampling import BatchSource

        return BatchSource(split)

    # -- state -------------------------------------------------------------------------------
    def begin(self, split) -> None:
        """Once before training (and before a checkpoint's state is loaded into this module)."""
        self.loss.begin(torch.as_tensor(np.asarray(split.labels), dtype=torch.float32), self.n_bits)

    def on_epoch_start(self, epoch: int, epochs: int) -> None:
        """Before epoch ``epoch`` (0-based) of ``epochs``."""

    def on_epoch_end(self, epoch: int, epochs: int) -> None:
        """After epoch ``epoch`` (0-based) of ``epochs``, on every process alike."""

    # -- each step ---------------------------------------------------------------------------
    def relax(self, z: torch.Tensor, progress: float) -> torch.Tensor:
        """Relaxed codes in (-1, 1) from pre-activations ``z`` (B, K); ``progress`` in [0, 1]."""
        if self.relaxation == "sigmoid":
            return 2 * torch.sigmoid(z) - 1
        return torch.tanh(z) if self.relaxation == "tanh" else z

    def compute_loss(self, codes: torch.Tensor, labels: torch.Tensor, indices: torch.Tensor,
                     tuples=None) -> dict[str, torch.Tensor]:
        """The loss of one (global) batch: ``dict(loss=<scalar>, <term>=<detached>...)``."""
        from hashbench.losses import check_inputs

        check_inputs(self.loss, type(self).__name__, tuples=tuples)
        return self.loss(codes, labels, indices=indices, tuples=tuples)

    # -- after training ----------------------------------------------------------------------
    def encode(self, name: str, split, network: Callable[[Any], np.ndarray]) -> np.ndarray:
        """Codes of the ``name`` split (``query``, ``database``): by default the trained network's,
        ``network(split)`` (uint8 (n, K), bit = 1 where z > 0)."""
        return network(split)


# ---------------------------------------------------------------------------------- variants
def variant(base: type, **fixed) -> Callable[[Callable], Callable]:
    """Declare a variant of ``base`` with some arguments fixed, timm-style::

        @METHODS.register_module(name="triplet")
        @variant(DSRH, weighting="none", similarity="binary")
        def triplet():
            \"\"\"Triplet ranking hashing (Lai et al., CVPR 2015): ...\"\"\"

    The registered object is a function that builds ``base`` with ``fixed`` and whatever else it
    is given; its signature is ``base``'s without the fixed parameters (so configs, ``method.KEY``
    words and ``hashbench list`` see exactly what can be set), and giving a fixed one is refused.
    ``__wrapped_class__`` names ``base`` (its kind and parameter constraints).
    """
    params = inspect.signature(base).parameters
    unknown = set(fixed) - set(params)
    if unknown:
        raise TypeError(f"variant of {base.__name__}: no parameter {sorted(unknown)[0]!r}")  # our bug

    def wrap(fn: Callable) -> Callable:
        @functools.wraps(fn)
        def build(*args, **kwargs):
            clash = sorted(set(kwargs) & set(fixed))
            if clash:
                raise HashbenchError(f"{fn.__name__} fixes {clash[0]}={fixed[clash[0]]!r} (it is {base.__name__} "
                                     f"with {', '.join(f'{k}={v!r}' for k, v in fixed.items())}); use "
                                     f"{base.__name__.lower()} to set it")
            return base(*args, **fixed, **kwargs)

        build.__signature__ = inspect.Signature([p for n, p in params.items() if n not in fixed])
        build.__wrapped_class__ = base
        build.fixed = dict(fixed)
        del build.__wrapped__  # inspect.signature must not follow functools.wraps to fn
        return build

    return wrap


def family(entry) -> str:
    """The family of a registered method (pairwise, triplet, pointwise, listwise, classic, baseline)."""
    return getattr(method_class(entry), "family", "other")


def method_class(entry) -> type:
    """The class a registered method builds (a variant's base class, else the entry itself)."""
    return getattr(entry, "__wrapped_class__", entry)
