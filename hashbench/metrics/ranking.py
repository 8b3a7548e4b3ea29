"""Metric formulas, per query, from tie-group sums or from short ranked lists.

Notation (per query): the database is split into tie groups by Hamming distance d = 0..bits;
group d holds ``n_d`` items at ranks ``s_d + 1 .. s_d + n_d``. Over the items of a group we keep
the number relevant under binary relevance (``rel``), the number with graded relevance r > 0
(``pos``), the sum of r (``gsum``) and the sum of the NDCG gains 2**r - 1 (``gain``).

``expected`` ties (He, Cakir & Sclaroff, "Hashing as Tie-Aware Learning to Rank", CVPR 2018):
every order inside a group is equally likely, so each rank of group d holds, on average,
``1/n_d`` of each group sum. Precision@k, ACG@k and DCG@k are linear in the ranked values and
follow directly. Average precision (and wMAP) is a sum over ranks p of ``a_p * S_p / p`` with
``S_p = sum_{i<=p} b_i`` (AP: a = b = binary relevance; wMAP: a = 1[r > 0], b = r). For a
complete group with A items having a = 1, b-sum Bg, B_s the b-sum of all earlier groups and
``h1 = sum_q 1/(s+q)``, ``h2 = sum_q (q-1)/(s+q)`` over its ranks::

    E[group's share] = ((A * B_s + Bg) * h1 + Bg * (A - 1) / (n - 1) * h2) / n

using E[a_q b_q] = Bg/n and E[a_q b_q'] = (A Bg - Bg) / (n (n - 1)) for q != q'. A group cut by
rank K contributes through its first t ranks; the number X of a = 1 items among them is
hypergeometric, and given X = x the share is ``(x (B_s + beta) h1 + x (x-1) beta h2 / (t-1)) / t``
with beta = Bg / A. With the "relevant retrieved" denominator (M + X, M the a = 1 items of the
earlier groups) the expectation is an exact sum over x; with min(R, K) it only needs E[X] and
E[X(X-1)].
"""
from __future__ import annotations

import numpy as np
from numba import njit, prange


@njit(cache=True)
def _boundary_share(x, t, bs, beta, h1, h2):
    share = x * (bs + beta) * h1
    if t > 1:
        share += x * (x - 1.0) * beta * h2 / (t - 1.0)
    return share / t


@njit(parallel=True, cache=True)
def _expected_ap_kernel(n, a_cnt, b_sum, a_total, keff, min_den, inv, out):
    c, n_groups = n.shape
    for i in prange(c):
        s = 0
        m_before = 0.0
        b_before = 0.0
        num = 0.0
        result = -1.0
        for d in range(n_groups):
            size = n[i, d]
            if size == 0:
                continue
            if s >= keff:
                break
            a = np.float64(a_cnt[i, d])
            t = min(size, keff - s)
            if a == 0.0:
                s += size
                continue
            bg = b_sum[i, d]
            h1 = 0.0
            h2 = 0.0
            for q in range(1, t + 1):
                v = inv[s + q]
                h1 += v
                h2 += (q - 1) * v
            if t == size:
                share = (a * b_before + bg) * h1
                if size > 1:
                    share += bg * (a - 1.0) / (size - 1.0) * h2
                num += share / size
                m_before += a
                b_before += bg
            elif min_den:
                beta = bg / a
                ex = t * a / size
                exx = t * (t - 1.0) * a * (a - 1.0) / (size * (size - 1.0))
                share = (b_before + beta) * h1 * ex
                if t > 1:
                    share += beta * h2 * exx / (t - 1.0)
                num += share / t
            else:
                # E[(num + share(X)) / (m_before + X)], X ~ Hypergeometric(size, a, t):
                # walk the pmf outward from its mode by the ratio recurrence, normalise at the end
                beta = bg / a
                ai = np.int64(a)
                lo = max(0, t - (size - ai))
                hi = min(t, ai)
                mode = ((t + 1) * (ai + 1)) // (size + 2)
                mode = min(max(mode, lo), hi)
                total_p = 1.0
                den = m_before + mode
                acc = 0.0
                if den > 0:
                    acc = (num + _boundary_share(mode, t, b_before, beta, h1, h2)) / den
                p = 1.0
                for x in range(mode, hi):
                    p *= (ai - x) * (t - x) / ((x + 1.0) * (size - ai - t + x + 1.0))
                    total_p += p
                    den = m_before + x + 1
                    acc += p * (num + _boundary_share(x + 1, t, b_before, beta, h1, h2)) / den
                    if p < 1e-20:
                        break
                p = 1.0
                for x in range(mode, lo, -1):
                    p *= x * (size - ai - t + x) / ((ai - x + 1.0) * (t - x + 1.0))
                    total_p += p
                    den = m_before + x - 1
                    if den > 0:
                        acc += p * (num + _boundary_share(x - 1, t, b_before, beta, h1, h2)) / den
                    if p < 1e-20:
                        break
                result = acc / total_p
            s += size
        if result < 0.0:
            if min_den:
                den = min(a_total[i], keff)
                result = num / den if den > 0 else 0.0
            else:
                result = num / m_before if m_before > 0 else 0.0
        out[i] = result


def inverse_ranks(n_db: int) -> np.ndarray:
    """``inv[i] = 1 / i`` for i = 1..n_db (inv[0] = 0)."""
    inv = np.zeros(n_db + 1)
    inv[1:] = 1.0 / np.arange(1, n_db + 1)
    return inv


def discount_prefix(n_db: int) -> np.ndarray:
    """``D[i] = sum_{j <= i} 1 / log2(j + 1)``, the DCG discount summed over the first i ranks."""
    out = np.zeros(n_db + 1)
    out[1:] = np.cumsum(1.0 / np.log2(np.arange(2, n_db + 2)))
    return out


def expected_ap(n, a_cnt, b_sum, a_total, k, n_db, min_den, inv):
    """Tie-aware (expected) AP@k per query; k >= n_db (the database size) gives the full AP.

    n, a_cnt (c, G) int64, b_sum (c, G) float64: group sums, needed up to the group holding
    rank k; a_total (c,) items with a = 1 in the database (for the min(R, k) denominator).
    """
    out = np.empty(n.shape[0])
    _expected_ap_kernel(np.ascontiguousarray(n), np.ascontiguousarray(a_cnt),
                        np.ascontiguousarray(b_sum, dtype=np.float64),
                        np.ascontiguousarray(a_total, dtype=np.float64), int(min(k, n_db)),
                        bool(min_den), inv, out)
    return out


def expected_prefix_sum(n, group_sum, k, n_db, discount=None):
    """Expected sum over ranks 1..k of a per-item value whose group totals are ``group_sum``.

    With ``discount`` (prefix sums D of a per-rank weight), the weighted sum: every rank of a
    tie group carries the group's mean value. Groups past rank k may be left empty in ``n``.
    """
    n = np.asarray(n)
    keff = min(k, n_db)
    end = np.cumsum(n, axis=1)
    start = end - n
    take = np.clip(keff - start, 0, n)
    mean = np.divide(group_sum, n, out=np.zeros(n.shape), where=n > 0)
    if discount is None:
        return (mean * take).sum(axis=1)
    return (mean * (discount[start + take] - discount[start])).sum(axis=1)


def within_radius(n, group_sum, radius):
    """Sum of a per-group quantity over distances 0..radius."""
    return np.asarray(group_sum)[:, : radius + 1].sum(axis=1)


def ideal_dcg(stats, k, discount):
    """IDCG@k per query from the graded-relevance histogram or from sorted ideal gains."""
    if "rhist" in stats:
        hist = stats["rhist"][:, ::-1]  # relevance values from high to low
        values = np.arange(hist.shape[1] - 1, -1, -1, dtype=np.float64)
        end = np.cumsum(hist, axis=1)
        start = end - hist
        take = np.clip(k - start, 0, hist)
        gains = np.exp2(values) - 1.0
        return (gains * (discount[start + take] - discount[start])).sum(axis=1)
    ideal = stats["ideal"]
    kk = min(k, ideal.shape[1])
    weights = np.diff(discount[: kk + 1])
    return ideal[:, :kk] @ weights


class RankedList:
    """Metrics of an explicit ranked list: ``r`` (c, L) graded and ``b`` (c, L) binary relevance.

    Cumulative sums are taken once, so a metric at any cut k <= L is a column lookup.
    """

    def __init__(self, r: np.ndarray, b: np.ndarray):
        self.r = np.asarray(r, dtype=np.float64)
        self.b = np.asarray(b, dtype=bool)
        self.length = self.r.shape[1]
        self.ranks = np.arange(1, self.length + 1, dtype=np.float64)
        self._cache: dict[str, np.ndarray] = {}

    def _cum(self, name):
        if name not in self._cache:
            if name == "rel":
                v = np.cumsum(self.b, axis=1, dtype=np.float64)
            elif name == "r":
                v = np.cumsum(self.r, axis=1)
            elif name == "pos":
                v = np.cumsum(self.r > 0, axis=1, dtype=np.float64)
            elif name == "ap":
                v = np.cumsum(self.b * (self._cum("rel") / self.ranks), axis=1)
            elif name == "wap":
                v = np.cumsum((self.r > 0) * (self._cum("r") / self.ranks), axis=1)
            elif name == "dcg":
                disc = 1.0 / np.log2(self.ranks + 1.0)
                v = np.cumsum((np.exp2(self.r) - 1.0) * disc, axis=1)
            else:  # pragma: no cover - our own bug
                raise KeyError(name)
            self._cache[name] = v
        return self._cache[name]

    def at(self, name, k):
        return self._cum(name)[:, min(k, self.length) - 1]

    def average_precision(self, k, weighted, total, min_den):
        num = self.at("wap" if weighted else "ap", k)
        if min_den:
            den = np.minimum(total, min(k, self.length)).astype(np.float64)
        else:
            den = self.at("pos" if weighted else "rel", k)
        return np.divide(num, den, out=np.zeros_like(num), where=den > 0)


def safe_ratio(num, den):
    num = np.asarray(num, dtype=np.float64)
    den = np.asarray(den, dtype=np.float64)
    return np.divide(num, den, out=np.zeros(np.broadcast(num, den).shape), where=den > 0)

