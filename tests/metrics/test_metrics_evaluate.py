"""hashbench.metrics.evaluate against independent oracles.

Oracles: a brute-force reference below (sort each query's ranking, apply the definitions of
docs/evaluation.md literally), exact enumeration of every order inside tie groups for tiny
databases, seeded shuffles, sklearn's tie-averaging ndcg_score, and hand-computed values.
"""
from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from hashbench.metrics import evaluate
from hashbench.metrics.torch_backend import _mix32

ALL = ["map", "map@1", "map@3", "map@10", "wmap", "wmap@3", "wmap@10", "ndcg@1", "ndcg@4",
       "ndcg@10", "acg@1", "acg@4", "acg@10", "p@1", "p@4", "p@10", "p@h0", "p@h1", "p@h2"]


# --------------------------------------------------------------------------- reference
def _bits(codes):
    codes = np.asarray(codes)
    return codes > 0


def _relevance(ql, dl, graded=None, binary=None):
    ql, dl = np.asarray(ql, np.int64), np.asarray(dl, np.int64)
    r = (ql @ dl.T).astype(float) if graded is None else np.asarray(graded(ql, dl), float)
    b = r > 0 if binary is None else np.asarray(binary(ql, dl)) > 0
    return r, b


def _one_query(name, order, dist, r, b, ap_den):
    """One metric for one query, from an explicit ranking ``order`` (database indices)."""
    n_db = len(order)
    rr, bb = r[order], b[order]
    family, _, cut = name.partition("@")
    if family == "p" and cut.startswith("h"):
        inside = dist <= int(cut[1:])
        return b[inside].mean() if inside.any() else 0.0
    k = n_db if cut == "" else min(int(cut), n_db)
    if family in ("map", "wmap"):
        hit = bb if family == "map" else rr > 0
        value = bb if family == "map" else rr
        total_hits = hit.sum()
        num, seen = 0.0, 0.0
        for i in range(k):
            seen += value[i]
            if hit[i]:
                num += seen / (i + 1)
        den = hit[:k].sum() if ap_den == "retrieved" else min(total_hits, k)
        return num / den if den > 0 else 0.0
    if family == "p":
        return bb[:k].sum() / k
    if family == "acg":
        return rr[:k].sum() / k
    if family == "ndcg":
        gains = 2.0 ** rr - 1
        ideal = 2.0 ** np.sort(r)[::-1] - 1
        disc = 1 / np.log2(np.arange(2, k + 2))
        idcg = (ideal[:k] * disc).sum()
        return (gains[:k] * disc).sum() / idcg if idcg > 0 else 0.0
    raise AssertionError(name)


def reference(qc, dc, ql, dl, metrics, order_of, *, ap_den="retrieved", no_relevant="zero",
              graded=None, binary=None):
    """Mean over queries of every metric, each query ranked by ``order_of(query, dist)``."""
    dist = (_bits(qc)[:, None, :] != _bits(dc)[None, :, :]).sum(-1)
    r, b = _relevance(ql, dl, graded, binary)
    has = b.any(axis=1)
    out = {}
    for name in metrics:
        vals = []
        for i in range(dist.shape[0]):
            v = _one_query(name, order_of(i, dist[i]), dist[i], r[i], b[i], ap_den)
            vals.append(v if has[i] else 0.0)
        vals = np.array(vals)
        out[name] = vals[has].mean() if no_relevant == "skip" else vals.mean()
    return out


def index_order(i, dist):
    return np.lexsort((np.arange(len(dist)), dist))


def seeded_order(seed):
    """The documented random:SEED order: ties by a per-(query, item) hashed key."""
    def order_of(i, dist):
        qseed = _mix32(_mix32(np.int64(seed)) ^ np.int64(i))
        key = _mix32(qseed ^ np.arange(len(dist), dtype=np.int64))
        return np.lexsort((key, dist))
    return order_of


def shuffled_order(rng):
    def order_of(i, dist):
        return np.lexsort((rng.random(len(dist)), dist))
    return order_of


def exact_expectation(qc, dc, ql, dl, metrics, **kw):
    """Average over every order inside the tie groups (tiny databases only)."""
    dist = (_bits(qc)[:, None, :] != _bits(dc)[None, :, :]).sum(-1)
    r, b = _relevance(ql, dl)
    has = b.any(axis=1)
    out = {name: [] for name in metrics}
    for i in range(dist.shape[0]):
        groups = [np.flatnonzero(dist[i] == d) for d in np.unique(dist[i])]
        orders = [np.concatenate(p) for p in
                  itertools.product(*[itertools.permutations(g) for g in groups])]
        for name in metrics:
            v = np.mean([_one_query(name, o, dist[i], r[i], b[i], kw.get("ap_den", "retrieved"))
                         for o in orders])
            out[name].append(v if has[i] else 0.0)
    return {name: float(np.mean(v)) for name, v in out.items()}


def make_data(seed, nq=12, n_db=60, bits=8, classes=5, p_label=0.3):
    rng = np.random.default_rng(seed)
    qc = rng.integers(0, 2, (nq, bits), dtype=np.uint8)
    dc = rng.integers(0, 2, (n_db, bits), dtype=np.uint8)
    ql = (rng.random((nq, classes)) < p_label).astype(np.uint8)
    dl = (rng.random((n_db, classes)) < p_label).astype(np.uint8)
    return qc, dc, ql, dl


def assert_scores(got, want, atol=1e-12):
    assert set(got) == set(want)
    for name in want:
        assert got[name] == pytest.approx(want[name], abs=atol), name


# --------------------------------------------------------------------------- index / random
@pytest.mark.parametrize("bits,n_db,seed", [(8, 60, 0), (8, 200, 1), (32, 150, 2), (100, 80, 3)])
@pytest.mark.parametrize("ap_den", ["retrieved", "min_r_k"])
def test_index_ties_match_brute_force(bits, n_db, seed, ap_den):
    data = make_data(seed, n_db=n_db, bits=bits)
    got = evaluate(*data, metrics=ALL, ties="index", ap_denominator=ap_den)
    assert_scores(got, reference(*data, ALL, index_order, ap_den=ap_den))


def test_random_ties_match_brute_force_with_the_documented_key():
    data = make_data(4, n_db=120, bits=6)
    got = evaluate(*data, metrics=ALL, ties="random:7")
    assert_scores(got, reference(*data, ALL, seeded_order(7)))
    assert got != evaluate(*data, metrics=ALL, ties="random:8")


def test_skip_policy_and_count_of_queries_without_relevant():
    qc, dc, ql, dl = make_data(5, nq=15, n_db=80, p_label=0.25)
    ql[:4] = 0  # these queries share no label with anything
    scores, info = evaluate(qc, dc, ql, dl, metrics=ALL, ties="index", no_relevant="skip",
                            details=True)
    assert info["queries_without_relevant"] >= 4
    assert info["n_evaluated"] == 15 - info["queries_without_relevant"]
    assert_scores(scores, reference(qc, dc, ql, dl, ALL, index_order, no_relevant="skip"))
    zero = evaluate(qc, dc, ql, dl, metrics=["map"], ties="index")["map"]
    assert zero == pytest.approx(scores["map"] * info["n_evaluated"] / 15)


@pytest.mark.parametrize("bits,classes", [(300, 5), (16, 70), (16, 130)])
def test_wide_codes_and_many_labels(bits, classes):
    # 300 bits: distances beyond uint8; 70 / 130 classes: two and three label words
    data = make_data(6, nq=6, n_db=50, bits=bits, classes=classes, p_label=0.05)
    for ties, order in (("index", index_order), ("random:3", seeded_order(3))):
        assert_scores(evaluate(*data, metrics=ALL, ties=ties), reference(*data, ALL, order))


def test_custom_relevance_functions():
    data = make_data(7, n_db=90, classes=6, p_label=0.5)

    def two_or_more(a, b):
        return (np.asarray(a, np.int64) @ np.asarray(b, np.int64).T) >= 2

    def squared(a, b):
        return (np.asarray(a, float) @ np.asarray(b, float).T) ** 2

    got = evaluate(*data, metrics=ALL, ties="index", graded=squared, binary=two_or_more)
    want = reference(*data, ALL, index_order, graded=squared, binary=two_or_more)
    assert_scores(got, want)
    cos = evaluate(*data, metrics=ALL, ties="index", graded="cosine")
    from hashbench.similarity import cosine

    assert_scores(cos, reference(*data, ALL, index_order, graded=cosine), atol=1e-10)


# --------------------------------------------------------------------------- expected
@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("ap_den", ["retrieved", "min_r_k"])
def test_expected_equals_exact_enumeration_of_tie_orders(seed, ap_den):
    data = make_data(10 + seed, nq=5, n_db=7, bits=3, classes=3, p_label=0.4)
    metrics = ["map", "map@1", "map@2", "map@3", "map@5", "wmap@2", "wmap@4", "wmap",
               "ndcg@2", "ndcg@5", "acg@3", "p@2", "p@4", "p@h1"]
    got = evaluate(*data, metrics=metrics, ap_denominator=ap_den)
    assert_scores(got, exact_expectation(*data, metrics, ap_den=ap_den))


def test_expected_matches_mean_of_seeded_shuffles():
    data = make_data(20, nq=10, n_db=150, bits=6, classes=4)
    metrics = ["map", "map@20", "wmap@20", "ndcg@10", "acg@10", "p@10"]
    rng = np.random.default_rng(0)
    runs = [reference(*data, metrics, shuffled_order(rng)) for _ in range(150)]
    got = evaluate(*data, metrics=metrics)
    for name in metrics:
        values = np.array([run[name] for run in runs])
        se = values.std(ddof=1) / math.sqrt(len(values))
        assert abs(got[name] - values.mean()) <= 5 * se + 1e-12, name
    # and our own random:SEED policy converges to it too
    ours = np.array([[evaluate(*data, metrics=metrics, ties=f"random:{s}")[m] for m in metrics]
                     for s in range(60)])
    se = ours.std(axis=0, ddof=1) / math.sqrt(len(ours))
    expected = np.array([got[m] for m in metrics])
    assert np.all(np.abs(ours.mean(axis=0) - expected) <= 5 * se + 1e-12)


def test_expected_is_independent_of_database_order():
    qc, dc, ql, dl = make_data(21, n_db=300, bits=8)
    perm = np.random.default_rng(1).permutation(len(dc))
    a = evaluate(qc, dc, ql, dl, metrics=ALL)
    b = evaluate(qc, dc[perm], ql, dl[perm], metrics=ALL)
    assert_scores(a, b)
    # while the index policy does depend on it (the database is heavily tied)
    assert evaluate(qc, dc, ql, dl, metrics=ALL, ties="index") != evaluate(
        qc, dc[perm], ql, dl[perm], metrics=ALL, ties="index")


@pytest.mark.parametrize("k", [1, 5, 30, 1000])
def test_expected_ndcg_equals_sklearn(k):
    sklearn_metrics = pytest.importorskip("sklearn.metrics")
    qc, dc, ql, dl = make_data(22, nq=20, n_db=120, bits=8, classes=6, p_label=0.35)
    dist = (qc[:, None, :] != dc[None, :, :]).sum(-1)
    gains = 2.0 ** (ql.astype(int) @ dl.astype(int).T) - 1
    want = sklearn_metrics.ndcg_score(gains, -dist, k=k)
    assert evaluate(qc, dc, ql, dl, metrics=[f"ndcg@{k}"])[f"ndcg@{k}"] == pytest.approx(
        want, abs=1e-12)


# --------------------------------------------------------------------------- invariances
def test_code_conventions_give_identical_results():
    qc, dc, ql, dl = make_data(23, n_db=100, bits=12)
    base = evaluate(qc, dc, ql, dl, metrics=ALL, ties="index")
    signed = evaluate(qc.astype(np.int8) * 2 - 1, dc.astype(np.float32) * 2 - 1, ql, dl,
                      metrics=ALL, ties="index")
    boolean = evaluate(qc.astype(bool), dc.astype(bool), ql.astype(bool), dl.astype(np.int32),
                       metrics=ALL, ties="index")
    assert base == signed == boolean


def test_xor_mask_changes_nothing():
    qc, dc, ql, dl = make_data(24, n_db=100, bits=12)
    mask = np.random.default_rng(2).integers(0, 2, 12, dtype=np.uint8)
    for ties in ("expected", "index", "random:1"):
        assert evaluate(qc, dc, ql, dl, metrics=ALL, ties=ties) == evaluate(
            qc ^ mask, dc ^ mask, ql, dl, metrics=ALL, ties=ties)


@pytest.mark.parametrize("ties", ["expected", "index", "random:5"])
@pytest.mark.parametrize("ap_den", ["retrieved", "min_r_k"])
def test_map_at_k_beyond_database_equals_map(ties, ap_den):
    data = make_data(25, n_db=40, bits=6)
    s = evaluate(*data, metrics=["map", "map@40", "map@1000", "wmap", "wmap@40"], ties=ties,
                 ap_denominator=ap_den)
    assert s["map@40"] == pytest.approx(s["map"], abs=1e-12)
    assert s["map@1000"] == pytest.approx(s["map"], abs=1e-12)
    assert s["wmap@40"] == pytest.approx(s["wmap"], abs=1e-12)


def test_chunking_changes_nothing():
    data = make_data(26, nq=30, n_db=100, bits=8)
    for ties in ("expected", "index", "random:2"):
        whole = evaluate(*data, metrics=ALL, ties=ties)
        tiny = evaluate(*data, metrics=ALL, ties=ties, memory_budget=1)
        assert_scores(tiny, whole, atol=1e-14)


# --------------------------------------------------------------------------- by hand
# Query A = 0000 with labels {0, 1}; query B shares no label with the database; query C = 0011
# with label {2}, nothing within radius 1. Database (code, labels):
#   x0 0000 {0}   x1 1000 {2}   x2 0100 {0,1}   x3 1110 {1}   x4 1111 {2}
HAND = (np.array([[0, 0, 0, 0], [1, 1, 1, 1], [0, 0, 1, 1]]),
        np.array([[0, 0, 0, 0], [1, 0, 0, 0], [0, 1, 0, 0], [1, 1, 1, 0], [1, 1, 1, 1]]),
        np.array([[1, 1, 0, 0], [0, 0, 0, 1], [0, 0, 1, 0]]),
        np.array([[1, 0, 0, 0], [0, 0, 1, 0], [1, 1, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0]]))
L3 = 1 / math.log2(3)
HAND_NAMES = ["map", "map@2", "wmap@2", "ndcg@2", "acg@2", "p@2", "p@h0", "p@h1"]
# Query A by index: x0 x1 x2 x3 x4, rel 1 0 1 1 0, r 1 0 2 1 0; ideal r 2 1 1.
# Query C by index: x0 x4 (d 2), x1 x2 x3 (d 3); rel 0 1 1 0 0.
HAND_INDEX = {
    "map": [29 / 36, 0, 7 / 12],  # (1 + 2/3 + 3/4)/3 ; (1/2 + 2/3)/2
    "map@2": [1, 0, 1 / 2],
    "wmap@2": [1, 0, 1 / 2],  # ACG@1 ; ACG@2 = 1/2
    "ndcg@2": [1 / (3 + L3), 0, L3 / (1 + L3)],
    "acg@2": [1 / 2, 0, 1 / 2],
    "p@2": [1 / 2, 0, 1 / 2],
    "p@h0": [1, 0, 0],
    "p@h1": [2 / 3, 0, 0],  # C: nothing within radius 1
}
# Expected ties: A's group at distance 1 is {x1, x2} in either order; C's groups {x0, x4} and
# {x1, x2, x3}.
HAND_EXPECTED = {
    "map": [31 / 36, 0, 229 / 360],  # (1 + (1 + 2/3)/2 + 3/4)/3 ; (3/4 + (2/3+2/4+2/5)/3)/2
    "map@2": [1, 0, 3 / 4],
    "wmap@2": [9 / 8, 0, 3 / 4],  # (1 + (1 + 3/2)/2)/2
    "ndcg@2": [(1 + 1.5 * L3) / (3 + L3), 0, 1 / 2],
    "acg@2": [1, 0, 1 / 2],
    "p@2": [3 / 4, 0, 1 / 2],
    "p@h0": [1, 0, 0],
    "p@h1": [2 / 3, 0, 0],
}


@pytest.mark.parametrize("ties,table", [("index", HAND_INDEX), ("expected", HAND_EXPECTED)])
def test_hand_computed_cases(ties, table):
    scores, info = evaluate(*HAND, metrics=HAND_NAMES, ties=ties, details=True)
    assert info["queries_without_relevant"] == 1
    for name, per_query in table.items():
        np.testing.assert_allclose(info["per_query"][name], per_query, atol=1e-12, err_msg=name)
        assert scores[name] == pytest.approx(np.mean(per_query), abs=1e-12)
    skipped = evaluate(*HAND, metrics=HAND_NAMES, ties=ties, no_relevant="skip")
    for name, per_query in table.items():
        assert skipped[name] == pytest.approx((per_query[0] + per_query[2]) / 2, abs=1e-12)


def test_hand_computed_min_r_k_denominator():
    # A by index: top 2 = x0 x1, one hit of R = 3 -> 1 / min(3, 2); expected: (1/2 + 1)/2
    got = evaluate(*HAND, metrics=["map@2"], ties="index", ap_denominator="min_r_k",
                   details=True)[1]["per_query"]["map@2"]
    np.testing.assert_allclose(got, [1 / 2, 0, 1 / 4], atol=1e-12)
    got = evaluate(*HAND, metrics=["map@2"], ap_denominator="min_r_k",
                   details=True)[1]["per_query"]["map@2"]
    # C: x4 at rank 1 or 2 -> (1 + 1/2)/2 hits-weighted, over min(R = 2, 2)
    np.testing.assert_allclose(got, [3 / 4, 0, 3 / 8], atol=1e-12)


# --------------------------------------------------------------------------- torch path
def _torch_agrees(device):
    torch = pytest.importorskip("torch")
    data = make_data(30, nq=9, n_db=130, bits=10, classes=5)
    tensors = [torch.as_tensor(x).to(device) for x in data]
    for ties in ("expected", "index", "random:4"):
        for ap_den in ("retrieved", "min_r_k"):
            cpu = evaluate(*data, metrics=ALL, ties=ties, ap_denominator=ap_den,
                           backend="numba")
            tor, info = evaluate(*tensors, metrics=ALL, ties=ties, ap_denominator=ap_den,
                                 backend="torch", details=True)
            assert info["backend"] == "torch"
            assert_scores(tor, cpu, atol=1e-10)
    chunked = evaluate(*tensors, metrics=ALL, ties="random:4", backend="torch", memory_budget=1)
    assert_scores(chunked, evaluate(*data, metrics=ALL, ties="random:4"), atol=1e-10)
    custom = evaluate(*tensors, metrics=ALL, ties="index", graded="cosine", backend="torch")
    assert_scores(custom, evaluate(*data, metrics=ALL, ties="index", graded="cosine"),
                  atol=1e-6)


def test_cpu_and_torch_paths_agree():
    _torch_agrees("cpu")


def test_torch_cpu_tensors_use_the_compiled_kernel():
    torch = pytest.importorskip("torch")
    data = make_data(31, nq=4, n_db=50)
    scores, info = evaluate(*(torch.as_tensor(x) for x in data), metrics=ALL, details=True)
    assert info["backend"] == "numba"
    assert_scores(scores, evaluate(*data, metrics=ALL))


def test_gpu_path_agrees():
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    _torch_agrees("cuda")
