"""Shared pieces of the classic-method tests: a brute-force mAP oracle and seeded synthetic data."""
from __future__ import annotations

import numpy as np
import pytest


@pytest.fixture(autouse=True, scope="module")
def _single_threaded_blas():
    """Run these small linear-algebra tests with one BLAS thread.

    On a shared 2-core machine, threaded OpenBLAS spins waiting for a busy core and makes
    100x100 eigendecompositions tens of times slower; results are the same either way.
    """
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover
        yield
        return
    with threadpool_limits(limits=1, user_api="blas"):
        yield


def _brute_force_map(query_codes, db_codes, query_labels, db_labels):
    """Mean average precision of Hamming ranking, one query at a time, the textbook way.

    Relevance: sharing at least one label (labels are multi-hot (n, C) or class ids (n,)).
    Ties in Hamming distance are broken by database index (stable sort). A query without any
    relevant item scores 0.
    """
    query_labels, db_labels = np.asarray(query_labels), np.asarray(db_labels)
    if query_labels.ndim == 1:
        classes = np.union1d(query_labels, db_labels)
        query_labels = (query_labels[:, None] == classes).astype(int)
        db_labels = (db_labels[:, None] == classes).astype(int)
    aps = []
    for code, label in zip(query_codes, query_labels):
        distances = (db_codes != code).sum(axis=1)
        order = np.argsort(distances, kind="stable")
        relevant = (db_labels[order] @ label) > 0
        hits, precisions = 0, []
        for rank, is_relevant in enumerate(relevant, start=1):
            if is_relevant:
                hits += 1
                precisions.append(hits / rank)
        aps.append(np.mean(precisions) if precisions else 0.0)
    return float(np.mean(aps))


@pytest.fixture
def brute_force_map():
    """The function ``map(query_codes, db_codes, query_labels, db_labels) -> float``."""
    return _brute_force_map


def make_clusters(n, d, n_classes, *, seed, spread=1.0, scales=None):
    """Gaussian clusters: class ids (n,) and features (n, d); ``scales`` (d,) stretches the axes."""
    rng = np.random.default_rng(seed)
    scales = np.ones(d) if scales is None else np.asarray(scales)
    centres = rng.normal(size=(n_classes, d)) * scales * 3.0
    y = rng.integers(0, n_classes, size=n)
    X = centres[y] + rng.normal(size=(n, d)) * scales * spread
    return X, y


@pytest.fixture
def clusters():
    """The function :func:`make_clusters`."""
    return make_clusters
