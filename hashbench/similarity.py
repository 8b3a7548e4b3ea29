"""How label vectors become similarity, shared by every loss and every metric.

Each function takes two multi-hot label matrices ``a`` of shape (n, C) and ``b`` of shape (m, C)
(numpy arrays or torch tensors) and returns an (n, m) matrix where larger means more similar, so
"relevant" means the same thing in training and in evaluation.
"""
from __future__ import annotations

from hashbench.registry import SIMILARITIES


def _is_torch(x) -> bool:
    return type(x).__module__.startswith("torch")


def _matmul(a, b):
    if _is_torch(a):
        return a.float() @ b.float().T
    return a.astype("int64") @ b.astype("int64").T


@SIMILARITIES.register_module(name="graded")
def graded(a, b):
    """Number of shared labels r = <y_a, y_b> (DSRH's multi-level similarity)."""
    return _matmul(a, b)


@SIMILARITIES.register_module(name="binary")
def binary(a, b):
    """1 if the two items share at least one label, else 0."""
    r = _matmul(a, b) > 0
    return r.float() if _is_torch(r) else r.astype("int64")


@SIMILARITIES.register_module(name="cosine")
def cosine(a, b):
    """Cosine of the two label vectors, in [0, 1] for multi-hot labels (0 where one is empty)."""
    r = _matmul(a, b)
    if _is_torch(a):
        na = a.float().norm(dim=1, keepdim=True)
        nb = b.float().norm(dim=1, keepdim=True)
        return r / (na * nb.T).clamp_min(1e-12)
    import numpy as np

    na = np.linalg.norm(a.astype("float64"), axis=1, keepdims=True)
    nb = np.linalg.norm(b.astype("float64"), axis=1, keepdims=True)
    return r / np.maximum(na * nb.T, 1e-12)
