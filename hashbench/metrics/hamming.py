"""Compiled CPU kernels: popcount distances, tie groups and the relevance of the candidates.

Codes and labels arrive packed into uint64 words (see :func:`hashbench.metrics.inputs.pack_bits`).
For each query, :func:`group_stats` works on a per-worker buffer of N small distances:

1. the Hamming distance to every item, ``popcount(q ^ x)``: a branch-free loop the compiler
   vectorises;
2. the query's cut: the tie group holding rank K (found from every 64th item, then made exact
   with whole-buffer counts ``#{d <= b}``, which also vectorise), or a radius, or everything
   for full-ranking metrics;
3. the indices of the candidates (distance <= cut), in database order, by a branch-free
   compaction; their histogram over distances is the counting sort of the ranking;
4. only for those candidates the relevance ``r = popcount(y_q & y_x)`` (shared labels), in a
   gather loop without branches so that the scattered label loads overlap, then summed per
   distance. With the ``index`` and ``random`` tie policies the relevance of ranks 1..K is laid
   out in rank order as well.

Everything downstream (every metric, every tie policy) comes from these per-group sums and short
ranked lists, never from a sorted copy of the database. :func:`relevance_histograms` counts,
per query, the database items sharing 0, 1, 2, ... labels (for the ideal DCG and R), over the
distinct database label vectors only.
"""
from __future__ import annotations

import numpy as np
from numba import njit, prange
from numba.extending import intrinsic

_MASK32 = np.uint64(0xFFFFFFFF)
_S15, _S16 = np.uint64(15), np.uint64(16)
_M1, _M2 = np.uint64(0x7FEB352D), np.uint64(0x5BD1E995)


@intrinsic
def popcount(typingctx, x):
    """Number of set bits of an integer, as the CPU's popcount instruction."""
    sig = x(x)

    def codegen(context, builder, signature, args):
        return builder.ctpop(args[0])

    return sig, codegen


@njit(inline="always")
def _mix32(x):
    # a bijection of 32-bit integers (xor-shift / odd multiply, constants below 2**31 so the
    # same arithmetic is exact in torch int64 too)
    x = x & _MASK32
    x ^= x >> _S16
    x = (x * _M1) & _MASK32
    x ^= x >> _S15
    x = (x * _M2) & _MASK32
    x ^= x >> _S16
    return x


@njit(cache=True)
def tie_key_seed(seed, query):
    """Per-query seed of the ``random:SEED`` tie order (query = global query index)."""
    return _mix32(_mix32(np.uint64(seed)) ^ np.uint64(query))


@njit(cache=True)
def tie_key(query_seed, item):
    """Random key of database item ``item``; inside a tie group items are ranked by it.

    A bijection of the item index for a fixed query, so no two items share a key.
    """
    return _mix32(np.uint64(query_seed) ^ np.uint64(item))


@njit(inline="always")
def _distances(qw, i, dw, dist):
    """dist[j] = popcount(q_i ^ x_j) for every database item j (one word unrolled: vectorised)."""
    n_db, n_words = dw.shape
    if n_words == 1:
        qv = qw[i, 0]
        for j in range(n_db):
            dist[j] = popcount(qv ^ dw[j, 0])
    else:
        for j in range(n_db):
            s = 0
            for w in range(n_words):
                s += popcount(qw[i, w] ^ dw[j, w])
            dist[j] = s


@njit(inline="always")
def _count_within(dist, radius):
    # items at distance <= radius: a branch-free loop the compiler vectorises
    c = 0
    for j in range(dist.shape[0]):
        c += dist[j] <= radius
    return c


@njit(cache=True)
def _boundary(dist, target, n_groups):
    """Smallest distance b with at least ``target`` items at distance <= b."""
    # estimate from every 64th item, then walk to the exact value with whole-buffer counts
    sample = np.zeros(n_groups, np.int64)
    for j in range(0, dist.shape[0], 64):
        sample[dist[j]] += 1
    b = n_groups - 1
    acc = 0
    for d in range(n_groups):
        acc += sample[d] * 64
        if acc >= target:
            b = d
            break
    count = _count_within(dist, b)
    if count >= target:
        while b > 0:
            below = _count_within(dist, b - 1)
            if below < target:
                break
            b -= 1
    else:
        while count < target:
            b += 1
            count = _count_within(dist, b)
    return b


@njit(parallel=True, cache=True)
def group_stats(qw, dw, ql, dl, dense_r, dense_b, use_dense, kcut, radius, full, ktop,
                random, seed, q0, gain_of, proto, n_par,
                n_out, rel_out, pos_out, gsum_out, gain_out, top_r, top_b):
    """Fill the per-query, per-distance sums for one chunk of queries (outputs zeroed by caller).

    qw (c, W), dw (N, W): packed codes. ql (c, L), dl (N, L): packed labels, or dense_r / dense_b
    (c, N) precomputed graded / binary relevance when ``use_dense``. kcut: the largest top-K cut
    (0: none); radius: the largest Hamming radius (-1: none); full: every item. ktop > 0 asks
    for the relevance of ranks 1..ktop in order (``random`` picks the seeded order within tie
    groups instead of index order). gain_of[r] = 2**r - 1; proto: a one-element array whose
    dtype holds a distance; n_par: number of parallel workers. Outputs (c, G), filled for the
    distances up to the query's cut (the tie group holding rank kcut, the radius, or all):
    n_out items, rel_out binary-relevant items, pos_out items with r > 0, gsum_out sum of r,
    gain_out sum of 2**r - 1; top_r / top_b (c, ktop): r and binary relevance by rank.
    """
    c = qw.shape[0]
    n_db = dw.shape[0]
    n_label_words = ql.shape[1]
    n_groups = n_out.shape[1]
    for worker in prange(n_par):
        dist = np.empty(n_db, proto.dtype)
        cand = np.empty(n_db + 1, np.int32)
        cand_r = np.empty(n_db, np.float64)
        cand_b = np.empty(n_db if use_dense else 0, np.bool_)
        for i in range(worker, c, n_par):
            _distances(qw, i, dw, dist)  # pass 1

            boundary = -1
            if kcut > 0:
                boundary = _boundary(dist, min(kcut, n_db), n_groups)
            dcut = max(boundary, radius)
            if full:
                dcut = n_groups - 1
            if dcut < 0:
                continue
            dcut = min(dcut, n_groups - 1)

            # pass 2: indices of the candidates (distance <= cut), in index order, branch-free
            k = 0
            for j in range(n_db):
                cand[k] = j
                k += dist[j] <= dcut
            hist = n_out[i]
            for m in range(k):
                hist[dist[cand[m]]] += 1

            want_top = ktop > 0 and boundary >= 0
            start = np.zeros(n_groups + 1, np.int64)
            for d in range(n_groups):
                start[d + 1] = start[d] + hist[d]
            slot = start[:n_groups].copy()
            n_keyed = start[boundary + 1] if (want_top and random) else 0
            key = np.empty(n_keyed, np.uint64)
            key_r = np.empty(n_keyed, np.float64)
            key_b = np.empty(n_keyed, np.bool_)
            qseed = tie_key_seed(seed, q0 + i)

            # relevance of the candidates only: a gather loop without branches first, so the
            # scattered label loads overlap, then the per-distance sums
            if use_dense:
                for m in range(k):
                    cand_r[m] = dense_r[i, cand[m]]
                    cand_b[m] = dense_b[i, cand[m]]
            elif n_label_words == 1:
                a = ql[i, 0]
                for m in range(k):
                    cand_r[m] = popcount(a & dl[cand[m], 0])
            elif n_label_words == 2:
                a, a2 = ql[i, 0], ql[i, 1]
                for m in range(k):
                    j = cand[m]
                    cand_r[m] = popcount(a & dl[j, 0]) + popcount(a2 & dl[j, 1])
            else:
                for m in range(k):
                    ri = 0
                    for w in range(n_label_words):
                        ri += popcount(ql[i, w] & dl[cand[m], w])
                    cand_r[m] = ri
            for m in range(k):
                d = dist[cand[m]]
                r = cand_r[m]
                if use_dense:
                    b = cand_b[m]
                    g = 2.0 ** r - 1.0
                else:
                    b = r > 0
                    g = gain_of[np.int64(r)]
                rel_out[i, d] += b
                pos_out[i, d] += r > 0
                gsum_out[i, d] += r
                gain_out[i, d] += g
            if want_top:
                for m in range(k):
                    j = cand[m]
                    d = dist[j]
                    if d > boundary:
                        continue
                    r = cand_r[m]
                    b = cand_b[m] if use_dense else r > 0
                    p = slot[d]
                    slot[d] = p + 1
                    if random:
                        key[p] = tie_key(qseed, j)
                        key_r[p] = r
                        key_b[p] = b
                    elif p < ktop:
                        top_r[i, p] = r
                        top_b[i, p] = b

            if want_top and random:
                for d in range(boundary + 1):
                    s0 = start[d]
                    if s0 >= ktop:
                        break
                    e0 = start[d + 1]
                    if e0 == s0:
                        continue
                    order = np.argsort(key[s0:e0])
                    for t in range(min(e0 - s0, ktop - s0)):
                        top_r[i, s0 + t] = key_r[s0 + order[t]]
                        top_b[i, s0 + t] = key_b[s0 + order[t]]


@njit(parallel=True, cache=True)
def relevance_histograms(ql, ul, ucount, out):
    """out[i, v] += number of database items sharing exactly v labels with query i.

    ql (nq, L): packed query labels; ul (U, L): the distinct packed database label vectors and
    ucount (U,) how often each occurs, so the work is nq x U instead of nq x N.
    """
    n_label_words = ql.shape[1]
    n_patterns = ul.shape[0]
    n_values = out.shape[1]
    for i in prange(ql.shape[0]):
        shared = np.empty(n_patterns, np.int32)
        if n_label_words == 1:
            a = ql[i, 0]
            for u in range(n_patterns):
                shared[u] = popcount(a & ul[u, 0])
        elif n_label_words == 2:
            a, a2 = ql[i, 0], ql[i, 1]
            for u in range(n_patterns):
                shared[u] = popcount(a & ul[u, 0]) + popcount(a2 & ul[u, 1])
        else:
            for u in range(n_patterns):
                s = 0
                for w in range(n_label_words):
                    s += popcount(ql[i, w] & ul[u, w])
                shared[u] = s
        # four interleaved histograms, so consecutive increments rarely hit the same counter
        hist = np.zeros((4, n_values), np.int64)
        for u in range(n_patterns):
            hist[u & 3, shared[u]] += ucount[u]
        for v in range(n_values):
            out[i, v] += hist[0, v] + hist[1, v] + hist[2, v] + hist[3, v]


@njit(parallel=True, cache=True)
def distance_histograms(qw, dw, out):
    """out[i, d] = number of database items at Hamming distance d from query i (popcount only)."""
    n_db = dw.shape[0]
    n_groups = out.shape[1]
    for i in prange(qw.shape[0]):
        dist = np.empty(n_db, np.int32)
        _distances(qw, i, dw, dist)
        # four interleaved histograms, so consecutive increments rarely hit the same counter
        hist = np.zeros((4, n_groups), np.int64)
        for j in range(n_db):
            hist[j & 3, dist[j]] += 1
        for d in range(n_groups):
            out[i, d] = hist[0, d] + hist[1, d] + hist[2, d] + hist[3, d]


def hamming_histograms(query_words: np.ndarray, db_words: np.ndarray, bits: int) -> np.ndarray:
    """Per-query histograms of Hamming distances, shape (nq, bits + 1), from packed uint64 codes."""
    out = np.zeros((query_words.shape[0], bits + 1), np.int64)
    distance_histograms(np.ascontiguousarray(query_words), np.ascontiguousarray(db_words), out)
    return out


def unique_rows(words: np.ndarray, return_inverse: bool = False):
    """Distinct rows of a packed uint64 matrix with their counts (and, optionally, the inverse)."""
    words = np.ascontiguousarray(words)
    order = np.lexsort(words.T[::-1])
    ordered = words[order]
    new = np.ones(len(order), bool)
    new[1:] = np.any(ordered[1:] != ordered[:-1], axis=1)
    starts = np.flatnonzero(new)
    counts = np.diff(np.append(starts, len(order))).astype(np.int64)
    if not return_inverse:
        return ordered[starts], counts
    inverse = np.empty(len(order), np.int64)
    inverse[order] = np.cumsum(new) - 1
    return ordered[starts], counts, inverse
