"""Uncertainty of a table cell and paired comparisons of methods, from per-query scores.

The scheme is a two-stage bootstrap over what varies in a benchmark run: the training seed and
the query set. One replicate draws S seeds with replacement from a cell's S seeds and, for every
draw, resamples that seed's queries with replacement; its statistic is the mean, over the S
draws, of the mean score of the resampled queries. The interval is the percentile interval of
:data:`RESAMPLES` replicates.

Methods scored on the same queries and seeds are compared *paired*: every method of a
comparison is evaluated on the same replicate draws, so a replicate of the difference is the
difference of the methods' replicates. The two-sided p-value of "no difference" is the share of
difference replicates on the other side of zero, doubled, ``(1 + count) / (1 + resamples)``
(the test that inverts the percentile interval). :func:`holm` corrects a family of such tests.

What the scheme does and does not see: with few seeds the seed stage resamples few values, so the
interval under-states the seed-to-seed variance by about (S - 1) / S and, with three seeds, by
more (the percentile interval of a three-point distribution is coarse); the query stage adds the
query noise a second time, which makes the interval wider than needed when queries, not seeds,
dominate. The tests in ``tests/test_uncertainty.py`` measure its coverage.
"""
from __future__ import annotations

import zlib

import numpy as np

from hashbench.errors import HashbenchError

RESAMPLES = 2000
SEED = 0
LEVEL = 0.95
ALPHA = 0.05
_CHUNK = 1 << 22  # resampled query indices drawn at a time (32 MiB of int64)


def rng_for(seed: int, *parts: object) -> np.random.Generator:
    """A generator fixed by ``seed`` and the cell it is for (dataset, metric, bits, ...), so a cell's
    interval does not depend on which other cells are computed, or in what order."""
    key = zlib.crc32("|".join(map(str, parts)).encode())
    return np.random.default_rng([int(seed), key])


def replicates(scores: list[np.ndarray], resamples: int = RESAMPLES, rng: np.random.Generator | None = None
               ) -> np.ndarray:
    """``(resamples, M)`` replicate means of M methods' scores.

    ``scores`` holds one ``(n_s, M)`` array per seed: row q is query q's score, column m method m
    (a 1-D array is one method). Every column sees the same draws, which pairs the methods.
    """
    if not scores:
        raise HashbenchError("no per-query scores to resample")
    arrays = [np.asarray(x, dtype=np.float64) for x in scores]
    arrays = [x[:, None] if x.ndim == 1 else x for x in arrays]
    n_methods = arrays[0].shape[1]
    if any(x.ndim != 2 or x.shape[1] != n_methods or len(x) == 0 for x in arrays):
        raise HashbenchError("per-query scores of every seed need the same methods and at least one query")
    rng = rng if rng is not None else np.random.default_rng(SEED)
    n_seeds = len(arrays)
    pick = rng.integers(n_seeds, size=(resamples, n_seeds))
    total = np.zeros((resamples, n_methods))
    for s, x in enumerate(arrays):
        rows = np.nonzero(pick == s)[0]  # one entry per draw of seed s (a replicate may draw it twice)
        n = len(x)
        step = max(1, _CHUNK // n)
        for i in range(0, len(rows), step):
            chunk = rows[i:i + step]
            idx = rng.integers(n, size=(len(chunk), n))
            counts = np.bincount((idx + n * np.arange(len(chunk))[:, None]).ravel(), minlength=len(chunk) * n)
            np.add.at(total, chunk, counts.reshape(len(chunk), n) @ x / n)
    return total / n_seeds


def point(scores: list[np.ndarray]) -> np.ndarray:
    """The statistic the replicates resample: the mean over seeds of the mean over queries."""
    arrays = [np.asarray(x, dtype=np.float64) for x in scores]
    return np.mean([x.mean(axis=0) for x in arrays], axis=0)


def interval(reps: np.ndarray, level: float = LEVEL) -> tuple[np.ndarray, np.ndarray]:
    """Percentile interval (lo, hi) of each column of ``reps``."""
    tail = (1 - level) / 2 * 100
    lo, hi = np.percentile(reps, [tail, 100 - tail], axis=0)
    return lo, hi


def p_value(diff_reps: np.ndarray) -> np.ndarray:
    """Two-sided bootstrap p-value of "the mean difference is 0" from replicates of the difference."""
    diff_reps = np.asarray(diff_reps, dtype=np.float64)
    b = diff_reps.shape[0]
    below = (diff_reps <= 0).sum(axis=0)
    above = (diff_reps >= 0).sum(axis=0)
    return np.minimum(1.0, 2 * (1 + np.minimum(below, above)) / (1 + b))


def holm(pvalues, alpha: float = ALPHA) -> np.ndarray:
    """Holm's step-down procedure: which of the hypotheses are rejected at family-wise level ``alpha``."""
    p = np.asarray(pvalues, dtype=np.float64)
    order = np.argsort(p, kind="stable")
    rejected = np.zeros(len(p), dtype=bool)
    for rank, i in enumerate(order):
        if p[i] > alpha / (len(p) - rank):
            break
        rejected[i] = True
    return rejected


def scheme(resamples: int = RESAMPLES, seed: int = SEED, level: float = LEVEL) -> str:
    """The sentence a table footer states."""
    return (f"{level:.0%} intervals: two-stage bootstrap (seeds with replacement, then each drawn seed's queries "
            f"with replacement), percentile, {resamples} resamples, bootstrap seed {seed}")


__all__ = ["ALPHA", "LEVEL", "RESAMPLES", "SEED", "holm", "interval", "p_value", "point", "replicates", "rng_for",
           "scheme"]
