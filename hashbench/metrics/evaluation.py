"""Hamming-ranking evaluation: ``evaluate`` (metrics by name), ``curves`` and ``conventions``.

Definitions follow ``docs/evaluation.md``. For each query the database is ranked by Hamming
distance (ascending); items at equal distance form a tie group ordered by the tie policy:

- ``"expected"`` (default): the exact expectation over uniformly random orders inside every tie
  group, in closed form (He, Cakir & Sclaroff, CVPR 2018). Independent of database order.
- ``"index"``: ties broken by database index (a stable sort).
- ``"random:SEED"``: ties broken by a seeded random key per (query, item): reproducible,
  independent shuffles for every query.

Metric names: ``map`` (full ranking), ``map@K``, ``wmap@K`` (and ``wmap``), ``ndcg@k``,
``acg@k``, ``p@k``, ``p@hR`` (precision within Hamming radius R). Relevance is binary ("shares at
least one label") for map and p, graded (number of shared labels r) for wmap, ndcg and acg, so
"relevant" means what it means in :mod:`hashbench.similarity`. NDCG uses the gain 2**r - 1 and
the discount 1/log2(1 + rank); its ideal DCG takes the k largest r of the whole database.

Conventions that peers disagree on are options, with documented defaults:

- ``ap_denominator``: ``"retrieved"`` (default; relevant items retrieved in the top K, as DPSH,
  HashNet and DeepHash-pytorch compute mAP@K) or ``"min_r_k"`` (min(R, K), R all relevant
  items). It applies to map@K and wmap@K alike (for wmap, R counts items with r > 0).
- ``no_relevant``: a query with no relevant item in the database scores 0 on every metric
  (``"zero"``, default, as peers do) or is left out of every mean (``"skip"``); the number of such
  queries is reported in ``details``.
- ``p@hR`` of a query with nothing within radius R is 0; a cut larger than the database is the
  whole database (``p@k`` and ``acg@k`` then divide by the database size).
"""
from __future__ import annotations

import re
import sys
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numba
import numpy as np

from hashbench.errors import HashbenchError, suggest
from hashbench.metrics import hamming, ranking, torch_backend
from hashbench.metrics import inputs as _inputs
from hashbench.metrics.inputs import Ties, check_choice, is_cuda, is_torch, parse_ties

DEFAULT_METRICS = ("map", "map@5000", "wmap@5000", "ndcg@100", "acg@100", "p@100", "p@h2")
DEFAULT_CURVE_KS = (1, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000)
METRIC_FORMS = ("map", "map@K", "wmap", "wmap@K", "ndcg@k", "acg@k", "p@k", "p@hR")
AP_DENOMINATORS = ("retrieved", "min_r_k")
NO_RELEVANT = ("zero", "skip")
BACKENDS = ("auto", "numba", "torch")
DEFAULT_MEMORY_BUDGET = 512 * 2**20


# --------------------------------------------------------------------------- metric names
@dataclass(frozen=True)
class Metric:
    """A parsed metric name: ``family`` (map, wmap, ndcg, acg, p, p@h) and its cut or radius.

    ``k`` is K for top-K metrics, R for ``p@h``, None for a full ranking. ``r@h`` (recall within a
    radius) exists for :func:`curves` only.
    """

    family: str
    k: int | None = None

    def __str__(self) -> str:
        if self.family in ("p@h", "r@h"):
            return f"{self.family}{self.k}"
        return self.family if self.k is None else f"{self.family}@{self.k}"


_NAME = re.compile(r"(?:(map|wmap)(?:@(\S+))?|(ndcg|acg|p)@(?!h)(\S+)|p@h(\S+)|(ndcg|acg|p))")


def plugin_metrics() -> dict[str, Callable]:
    """Metric families registered in ``METRICS`` by plugins (every entry that is not built in)."""
    from hashbench.metrics.families import Family
    from hashbench.registry import METRICS, entries

    return {n: f for n, f in entries(METRICS).items() if not isinstance(f, Family)}


def _parse_plugin(name: str, text: str) -> Metric | None:
    family, at, cut = text.partition("@")
    if family not in plugin_metrics():
        return None
    if at and not (cut.isdigit() and int(cut) >= 1):
        raise HashbenchError(f"metric {name!r}: the cut must be a positive integer, e.g. '{family}@10'; "
                             f"got {cut!r}")
    return Metric(family, int(cut) if at else None)


def parse_metric(name: str) -> Metric:
    """``"map@5000"`` -> Metric("map", 5000); a plugin family from ``METRICS`` likewise; a
    one-line HashbenchError for anything else."""
    if not isinstance(name, str):
        raise HashbenchError(f"a metric name must be a string; got {name!r}")
    text = name.strip().lower()
    match = _NAME.fullmatch(text)
    if not match:
        plugin = _parse_plugin(name, text)
        if plugin is not None:
            return plugin
        forms = list(METRIC_FORMS) + [f"{p}[@k]" for p in plugin_metrics()]
        raise HashbenchError(
            f"unknown metric {name!r}; valid: {', '.join(suggest(text, forms))} "
            "(K, k positive integers, R a Hamming radius >= 0)")
    ap_family, ap_k, cut_family, cut_k, radius, bare = match.groups()
    if bare:
        raise HashbenchError(
            f"metric {name!r} needs a cut; valid: {bare}@k with k a positive integer, "
            f"e.g. '{bare}@100'")
    if radius is not None:
        if not radius.isdigit():
            raise HashbenchError(
                f"metric {name!r}: the Hamming radius must be an integer >= 0, e.g. 'p@h2'")
        return Metric("p@h", int(radius))
    family, k = (ap_family, ap_k) if ap_family else (cut_family, cut_k)
    if k is None:
        return Metric(family)
    if not k.isdigit() or int(k) < 1:
        raise HashbenchError(
            f"metric {name!r}: the cut must be a positive integer, e.g. '{family}@100'; "
            f"got {k!r}")
    return Metric(family, int(k))


# --------------------------------------------------------------------------- conventions
def conventions(ties="expected", ap_denominator="retrieved", no_relevant="zero",
                graded="graded", binary="binary") -> str:
    """One line stating every evaluation convention in force: printed under each results table.

    >>> conventions()  # doctest: +ELLIPSIS
    'ties: expected (exact mean over random orders within equal-distance groups...'
    """
    ties = parse_ties(ties)
    check_choice("ap_denominator", ap_denominator, AP_DENOMINATORS)
    check_choice("no_relevant", no_relevant, NO_RELEVANT)
    tie_text = {
        "expected": "expected (exact mean over random orders within equal-distance groups, "
                    "He et al. CVPR 2018)",
        "index": "index (stable by database index)",
        "random": f"random:{ties.seed} (seeded shuffle within equal-distance groups)",
    }[ties.policy]
    den = ("relevant retrieved in the top K" if ap_denominator == "retrieved"
           else "min(R, K)")
    skip = ("count as 0" if no_relevant == "zero" else "are skipped")
    graded_name = _relevance_name(graded, "graded")
    binary_name = _relevance_name(binary, "binary")
    return (f"ties: {tie_text}; mAP@K and wMAP@K divide by {den}; queries without a relevant "
            f"item {skip}; relevance: {binary_name} for map/p, {graded_name} for "
            f"wmap/ndcg/acg; NDCG gain 2^r-1, ideal from the whole database; p@hR = 0 when "
            f"nothing lies within radius R")


def _relevance_name(value, default: str) -> str:
    value = default if value is None else value
    name = value if isinstance(value, str) else getattr(value, "__name__", repr(value))
    described = {"graded": "graded = shared-label count", "binary": "binary = shares >= 1 label"}
    return described.get(name, name)


# --------------------------------------------------------------------------- inputs
def _relevance_fn(value, default: str) -> tuple[str, Callable]:
    from hashbench import similarity
    from hashbench.registry import SIMILARITIES, lookup

    value = default if value is None else value
    if value in ("graded", "binary"):  # the defaults, without a registry lookup
        return value, getattr(similarity, value)
    if isinstance(value, str):
        return value, lookup(SIMILARITIES, value)
    if callable(value):
        for name in ("graded", "binary"):
            if value is getattr(similarity, name):
                return name, value
        return getattr(value, "__name__", repr(value)), value
    raise HashbenchError(
        f"{default} relevance must be a registered similarity name or a callable "
        f"(labels_a, labels_b) -> (n, m) matrix; got {value!r}")


@dataclass
class _Problem:
    n_queries: int
    n_db: int
    bits: int
    n_classes: int
    backend: str
    fast: bool  # default relevance: popcount of packed labels
    graded_name: str
    binary_name: str
    graded: Callable
    binary: Callable
    arrays: dict = field(default_factory=dict)


def _prepare(query_codes, db_codes, query_labels, db_labels, graded, binary, backend):
    check_choice("backend", backend, BACKENDS)
    qc = _inputs.code_bits(query_codes, "query_codes")
    dc = _inputs.code_bits(db_codes, "db_codes")
    ql = _inputs.label_matrix(query_labels, "query_labels")
    dl = _inputs.label_matrix(db_labels, "db_labels")
    if qc.shape[1] != dc.shape[1]:
        raise HashbenchError(
            f"query_codes have {qc.shape[1]} bits but db_codes have {dc.shape[1]}; "
            "both must be (n, bits) with the same bits")
    if qc.shape[1] > 65535:
        raise HashbenchError(f"codes have {qc.shape[1]} bits; at most 65535 are supported")
    if ql.shape[0] != qc.shape[0]:
        raise HashbenchError(
            f"query_labels have {ql.shape[0]} rows but query_codes have {qc.shape[0]}; "
            "one label row per code row")
    if dl.shape[0] != dc.shape[0]:
        raise HashbenchError(
            f"db_labels have {dl.shape[0]} rows but db_codes have {dc.shape[0]}; "
            "one label row per code row")
    if ql.shape[1] != dl.shape[1]:
        raise HashbenchError(
            f"query_labels have {ql.shape[1]} classes but db_labels have {dl.shape[1]}; "
            "both must be multi-hot over the same classes")
    graded_name, graded_fn = _relevance_fn(graded, "graded")
    binary_name, binary_fn = _relevance_fn(binary, "binary")
    fast = graded_name == "graded" and binary_name == "binary"
    if backend == "auto":
        backend = "torch" if any(is_cuda(x) for x in (qc, dc, ql, dl)) else "numba"
    problem = _Problem(int(qc.shape[0]), int(dc.shape[0]), int(qc.shape[1]), int(ql.shape[1]),
                       backend, fast, graded_name, binary_name, graded_fn, binary_fn)
    if backend == "torch":
        import torch

        device = next((x.device for x in (qc, dc, ql, dl) if is_cuda(x)), torch.device("cpu"))

        def on_device(x):
            return (x if is_torch(x) else torch.as_tensor(np.ascontiguousarray(x))).to(device)

        problem.arrays = {
            "q_signed": torch_backend.signed_codes(on_device(qc)),
            "d_signed": torch_backend.signed_codes(on_device(dc)),
            "ql": on_device(ql), "dl": on_device(dl),
        }
        return problem
    qbits, dbits = _inputs.to_numpy(qc), _inputs.to_numpy(dc)
    problem.arrays = {"qw": _inputs.pack_bits(qbits), "dw": _inputs.pack_bits(dbits)}
    if fast:
        problem.arrays["ql_w"] = _inputs.pack_bits(_inputs.to_numpy(ql).astype(bool))
        problem.arrays["dl_w"] = _inputs.pack_bits(_inputs.to_numpy(dl).astype(bool))
    else:
        problem.arrays["ql"], problem.arrays["dl"] = ql, dl
    return problem


# --------------------------------------------------------------------------- planning
@dataclass(frozen=True)
class _Plan:
    kcut: int  # deepest rank any top-K metric looks at (clipped to the database size)
    full: bool  # some metric needs relevance of every item
    radius: int  # largest Hamming radius asked for (-1: none)
    ktop: int  # ranked-list length for the index / random policies (0: expected)
    kn: int  # ideal gains to keep for IDCG (0: no ndcg)


def _make_plan(specs: Sequence[Metric], problem: _Problem, ties: Ties) -> _Plan:
    n_db, bits = problem.n_db, problem.bits
    cuts, radii, ndcg_cuts, full = [0], [-1], [0], False
    for spec in specs:
        if spec.family in ("p@h", "r@h"):
            radii.append(min(spec.k, bits))
        elif spec.k is None or spec.k >= n_db:
            cuts.append(n_db)
            full = full or spec.family in ("map", "wmap")
        else:
            cuts.append(spec.k)
        if spec.family == "ndcg":
            ndcg_cuts.append(min(spec.k, n_db))
    radius = max(radii)
    full = full or radius >= bits
    kcut = max(cuts)
    ktop = kcut if ties.policy != "expected" else 0
    return _Plan(kcut, full, radius, ktop, max(ndcg_cuts))


def _chunk_size(problem: _Problem, plan: _Plan, budget: int) -> int:
    groups = problem.bits + 1
    per_query = groups * 8 * 8 + 512
    per_query += plan.ktop * 90  # ranked lists and their cumulative sums
    if problem.backend == "torch":  # dense (c, N) distances, bin slots, relevance, gains, temporaries
        per_query += problem.n_db * 72 + groups * torch_backend.LANES * 8
    elif not problem.fast:
        per_query += problem.n_db * 32  # dense relevance from a user callable
    per_query += plan.kn * 16
    return int(max(1, min(problem.n_queries, budget // per_query)))


# --------------------------------------------------------------------------- group sums
def _numba_setup(problem: _Problem, plan: _Plan) -> dict:
    setup = {"gain_of": np.exp2(np.arange(problem.n_classes + 1, dtype=np.float64)) - 1.0}
    if problem.fast:
        uniq, counts = hamming.unique_rows(problem.arrays["dl_w"])
        q_uniq, _, q_inverse = hamming.unique_rows(problem.arrays["ql_w"], return_inverse=True)
        rhist = np.zeros((q_uniq.shape[0], problem.n_classes + 1), np.int64)
        hamming.relevance_histograms(q_uniq, uniq, counts, rhist)
        setup.update(rhist=rhist, q_inverse=q_inverse, db_label_patterns=int(uniq.shape[0]))
    return setup


def _numba_chunk(problem: _Problem, plan: _Plan, ties: Ties, setup: dict, q0: int, q1: int):
    a = problem.arrays
    c, groups, n_db = q1 - q0, problem.bits + 1, problem.n_db
    stats = {name: np.zeros((c, groups), np.int64) for name in ("n", "rel", "pos")}
    stats.update(gsum=np.zeros((c, groups)), gain=np.zeros((c, groups)))
    ktop = plan.ktop
    top_r = np.zeros((c, max(ktop, 1)))
    top_b = np.zeros((c, max(ktop, 1)), bool)
    dummy_w = np.zeros((1, 1), np.uint64)
    if problem.fast:
        ql, dl = a["ql_w"][q0:q1], a["dl_w"]
        dense_r, dense_b = np.zeros((1, 1)), np.zeros((1, 1), bool)
    else:
        ql, dl = dummy_w, dummy_w
        rows = a["ql"][q0:q1]
        dense_r = np.ascontiguousarray(_as_numpy(problem.graded(rows, a["dl"])), np.float64)
        dense_b = np.ascontiguousarray(_as_numpy(problem.binary(rows, a["dl"])) > 0)
        _check_dense(dense_r, dense_b, c, n_db, problem)
    proto = np.zeros(1, np.uint8 if groups <= 256 else np.uint16)
    hamming.group_stats(
        a["qw"][q0:q1], a["dw"], ql, dl, dense_r, dense_b, not problem.fast, plan.kcut,
        plan.radius, plan.full, ktop, ties.policy == "random", ties.seed, q0,
        setup["gain_of"], proto, min(c, numba.get_num_threads()), stats["n"], stats["rel"],
        stats["pos"], stats["gsum"], stats["gain"], top_r, top_b)
    if ktop:
        stats["top_r"], stats["top_b"] = top_r, top_b
    if problem.fast:
        rhist = setup["rhist"][setup["q_inverse"][q0:q1]]
        stats["rhist"] = rhist
        stats["n_rel"] = stats["n_pos"] = n_db - rhist[:, 0]
    else:
        stats["n_rel"] = dense_b.sum(axis=1)
        stats["n_pos"] = (dense_r > 0).sum(axis=1)
        if plan.kn:
            gains = np.exp2(dense_r) - 1.0
            kn = min(plan.kn, n_db)
            if kn < n_db:
                gains = -np.partition(-gains, kn - 1, axis=1)[:, :kn]
            stats["ideal"] = -np.sort(-gains, axis=1)
    return stats


def _as_numpy(x) -> np.ndarray:
    if is_torch(x):
        return x.detach().cpu().numpy()
    return np.asarray(x)


def _check_dense(r, b, c, n_db, problem):
    for name, value in ((problem.graded_name, r), (problem.binary_name, b)):
        if value.shape != (c, n_db):
            raise HashbenchError(
                f"relevance function {name!r} returned shape {value.shape}; expected "
                f"(n_queries, n_database) = ({c}, {n_db})")


def _torch_chunk(problem: _Problem, plan: _Plan, ties: Ties, q0: int, q1: int):

    a = problem.arrays
    if problem.fast:
        relevance = torch_backend.default_relevance
    else:
        def relevance(ql, dl):
            return problem.graded(ql, dl), problem.binary(ql, dl)
    return torch_backend.chunk_stats(
        a["q_signed"][q0:q1], a["d_signed"], a["ql"][q0:q1], a["dl"], relevance,
        n_groups=problem.bits + 1, ktop=plan.ktop, kn=plan.kn,
        random=ties.policy == "random", seed=ties.seed, q0=q0)


# --------------------------------------------------------------------------- scores
def _chunk_scores(stats, specs, ties: Ties, min_den: bool, n_db: int, inv, discount):
    ranked = None
    if ties.policy != "expected" and "top_r" in stats:
        ranked = ranking.RankedList(stats["top_r"], stats["top_b"])
    n = stats["n"]
    out = {}
    for spec in specs:
        fam, k = spec.family, spec.k
        kk = n_db if k is None else min(k, n_db)
        if fam in ("map", "wmap"):
            weighted = fam == "wmap"
            total = stats["n_pos"] if weighted else stats["n_rel"]
            if ranked is None:
                a = stats["pos"] if weighted else stats["rel"]
                b = stats["gsum"] if weighted else stats["rel"]
                value = ranking.expected_ap(n, a, b, total, kk, n_db, min_den, inv)
            else:
                value = ranked.average_precision(kk, weighted, total, min_den)
        elif fam in ("p", "acg"):
            if ranked is None:
                group = stats["rel"] if fam == "p" else stats["gsum"]
                value = ranking.expected_prefix_sum(n, group, kk, n_db) / kk
            else:
                value = ranked.at("rel" if fam == "p" else "r", kk) / kk
        elif fam == "ndcg":
            if ranked is None:
                dcg = ranking.expected_prefix_sum(n, stats["gain"], kk, n_db, discount)
            else:
                dcg = ranked.at("dcg", kk)
            value = ranking.safe_ratio(dcg, ranking.ideal_dcg(stats, kk, discount))
        elif fam == "p@h":
            value = ranking.safe_ratio(ranking.within_radius(n, stats["rel"], k),
                                       ranking.within_radius(n, n, k))
        elif fam == "r@h":
            value = ranking.safe_ratio(ranking.within_radius(n, stats["rel"], k),
                                       stats["n_rel"])
        else:  # pragma: no cover - parse_metric only makes the families above
            raise AssertionError(fam)
        out[spec] = np.asarray(value, dtype=np.float64)
    return out


@contextmanager
def _torch_threads_kept():
    """Numba's OpenMP threading layer shares libgomp with torch, and its parallel kernels reset
    the OpenMP thread count — torch's intra-op threads with it. Scoring must not change how the
    next training step computes (a resumed run would not equal an uninterrupted one), so torch's
    count is put back afterwards."""
    torch = sys.modules.get("torch")
    threads = torch.get_num_threads() if torch is not None else None
    try:
        yield
    finally:
        if threads is not None and torch.get_num_threads() != threads:
            torch.set_num_threads(threads)


def _run(query_codes, db_codes, query_labels, db_labels, specs, ties, ap_denominator,
         graded, binary, memory_budget, backend, progress=None):
    with _torch_threads_kept():
        return _run_kernels(query_codes, db_codes, query_labels, db_labels, specs, ties, ap_denominator,
                            graded, binary, memory_budget, backend, progress)


def _run_kernels(query_codes, db_codes, query_labels, db_labels, specs, ties, ap_denominator,
                 graded, binary, memory_budget, backend, progress=None):
    ties = parse_ties(ties)
    check_choice("ap_denominator", ap_denominator, AP_DENOMINATORS)
    if not isinstance(memory_budget, (int, np.integer)) or memory_budget <= 0:
        raise HashbenchError(
            f"memory_budget must be a positive number of bytes; got {memory_budget!r}")
    problem = _prepare(query_codes, db_codes, query_labels, db_labels, graded, binary, backend)
    plan = _make_plan(specs, problem, ties)
    chunk = _chunk_size(problem, plan, int(memory_budget))
    inv = ranking.inverse_ranks(problem.n_db)
    discount = ranking.discount_prefix(problem.n_db)
    setup = _numba_setup(problem, plan) if problem.backend == "numba" else {}
    min_den = ap_denominator == "min_r_k"
    parts: dict[Metric, list] = {spec: [] for spec in specs}
    n_rel = []
    for q0 in range(0, problem.n_queries, chunk):
        q1 = min(q0 + chunk, problem.n_queries)
        if problem.backend == "numba":
            stats = _numba_chunk(problem, plan, ties, setup, q0, q1)
        else:
            stats = _torch_chunk(problem, plan, ties, q0, q1)
        scores = _chunk_scores(stats, specs, ties, min_den, problem.n_db, inv, discount)
        for spec in specs:
            parts[spec].append(scores[spec])
        n_rel.append(np.asarray(stats["n_rel"]))
        if progress is not None:
            progress(q1, problem.n_queries)
    per_query = {spec: np.concatenate(parts[spec]) for spec in specs}
    info = {"chunk": chunk, "backend": problem.backend,
            "db_label_patterns": setup.get("db_label_patterns")}
    return problem, ties, per_query, np.concatenate(n_rel), info


def _reduce(per_query, n_rel, no_relevant):
    missing = n_rel == 0
    keep = ~missing if no_relevant == "skip" else np.ones_like(missing)
    means = {}
    for spec, values in per_query.items():
        values = np.where(missing, 0.0, values)
        per_query[spec] = values
        means[spec] = float(values[keep].mean()) if keep.any() else float("nan")
    return means, int(missing.sum()), keep


def _plugin_scores(fn, spec: Metric, query_codes, db_codes, query_labels, db_labels, nq: int) -> np.ndarray:
    """A plugin family's per-query scores on {0, 1} codes and multi-hot labels, checked."""
    arrays = [_inputs.to_numpy(_inputs.code_bits(c, w)).astype(np.uint8)
              for c, w in ((query_codes, "query_codes"), (db_codes, "db_codes"))]
    labels = [_inputs.to_numpy(_inputs.label_matrix(y, w)) for y, w in ((query_labels, "query_labels"),
                                                                         (db_labels, "db_labels"))]
    values = np.asarray(fn(*arrays, *labels, k=spec.k), dtype=np.float64)
    if values.shape != (nq,):
        raise HashbenchError(f"metric {spec}: its function returned shape {values.shape}; a metric returns one "
                             f"score per query, shape ({nq},)")
    return values


# --------------------------------------------------------------------------- public API
def evaluate(query_codes, db_codes, query_labels, db_labels, metrics=DEFAULT_METRICS,
             ties="expected", *, ap_denominator="retrieved", no_relevant="zero", graded=None,
             binary=None, memory_budget=DEFAULT_MEMORY_BUDGET, backend="auto", details=False, progress=None):
    """Score Hamming ranking of ``db_codes`` for every query; the mean over queries per metric.

    Parameters
    ----------
    query_codes : ndarray or Tensor of shape (nq, bits), values in {0, 1}, {-1, +1} or bool
    db_codes : ndarray or Tensor of shape (N, bits), same convention choices
    query_labels : ndarray or Tensor of shape (nq, C), multi-hot in {0, 1}
    db_labels : ndarray or Tensor of shape (N, C), multi-hot in {0, 1}
    metrics : sequence of str
        Names such as ``map``, ``map@5000``, ``wmap@5000``, ``ndcg@100``, ``acg@100``, ``p@100``,
        ``p@h2``; the result is keyed by exactly these strings.
    ties : {"expected", "index", "random:SEED"}
        Order inside groups of equal distance; ``expected`` is the exact mean over random orders.
    ap_denominator : {"retrieved", "min_r_k"}
        AP@K (and wAP@K) divided by the relevant items retrieved in the top K, or min(R, K).
    no_relevant : {"zero", "skip"}
        Queries with no relevant database item score 0, or are left out of the means.
    graded, binary : str or callable, optional
        Relevance functions ``(labels_a (n, C), labels_b (m, C)) -> (n, m)``, or names in
        ``hashbench.registry.SIMILARITIES``. Defaults: ``"graded"`` (shared-label count, for
        wmap / ndcg / acg) and ``"binary"`` (shares >= 1 label, for map / p). Anything else is
        evaluated densely, chunk by chunk.
    memory_budget : int
        Bytes of scratch memory for one chunk of queries (default 512 MiB).
    backend : {"auto", "numba", "torch"}
        ``auto``: torch on the GPU when any input is a CUDA tensor, else the compiled CPU kernel.
    details : bool
        Also return an ``info`` dict: ``n_queries``, ``queries_without_relevant``,
        ``n_evaluated``, ``ties``, ``ap_denominator``, ``no_relevant``, ``graded``, ``binary``,
        ``conventions``, ``backend``, ``per_query`` (name -> (nq,) array), ``kept`` (the (nq,)
        mask of queries in the means) and more.
    progress : callable or None
        Called as ``progress(done, total)`` with the queries scored so far after each chunk (for a
        progress line; :class:`hashbench.train.Progress` ``.step`` fits).

    Returns
    -------
    dict[str, float] or (dict[str, float], dict)

    Examples
    --------
    >>> import numpy as np
    >>> from hashbench.metrics import evaluate
    >>> q = np.array([[0, 0, 1, 1]]); db = np.array([[0, 0, 1, 1], [1, 1, 0, 0], [0, 0, 1, 0]])
    >>> yq = np.array([[1, 0]]); ydb = np.array([[1, 0], [0, 1], [1, 1]])
    >>> evaluate(q, db, yq, ydb, metrics=["map", "p@1", "p@h1"])
    {'map': 1.0, 'p@1': 1.0, 'p@h1': 1.0}
    """
    if isinstance(metrics, str):
        metrics = [metrics]
    names = list(dict.fromkeys(metrics))
    if not names:
        raise HashbenchError(f"no metric asked for; valid: {', '.join(METRIC_FORMS)}")
    check_choice("no_relevant", no_relevant, NO_RELEVANT)
    parsed = {name: parse_metric(name) for name in names}
    plugins = plugin_metrics()
    specs = [s for s in dict.fromkeys(parsed.values()) if s.family not in plugins]
    problem, ties_, per_query, n_rel, extra = _run(
        query_codes, db_codes, query_labels, db_labels, specs, ties, ap_denominator, graded,
        binary, memory_budget, backend, progress)
    for spec in dict.fromkeys(parsed.values()):
        if spec.family in plugins:
            per_query[spec] = _plugin_scores(plugins[spec.family], spec, query_codes, db_codes, query_labels,
                                             db_labels, problem.n_queries)
    means, n_missing, kept = _reduce(per_query, n_rel, no_relevant)
    scores = {name: means[parsed[name]] for name in names}
    if not details:
        return scores
    info = {
        "n_queries": problem.n_queries,
        "n_database": problem.n_db,
        "bits": problem.bits,
        "queries_without_relevant": n_missing,
        "n_evaluated": int(kept.sum()),
        "ties": str(ties_),
        "ap_denominator": ap_denominator,
        "no_relevant": no_relevant,
        "graded": problem.graded_name,
        "binary": problem.binary_name,
        "conventions": conventions(ties_, ap_denominator, no_relevant, problem.graded_name,
                                   problem.binary_name),
        "per_query": {name: per_query[parsed[name]] for name in names},
        "kept": kept,
        **extra,
    }
    return scores, info


def curves(query_codes, db_codes, query_labels, db_labels, ks=DEFAULT_CURVE_KS,
           ties="expected", *, no_relevant="zero", graded=None, binary=None,
           memory_budget=DEFAULT_MEMORY_BUDGET, backend="auto") -> dict[str, Any]:
    """Precision / recall at every Hamming radius and NDCG / precision / ACG at every k in ``ks``.

    Same inputs and conventions as :func:`evaluate`. Returns a dict of numpy arrays:
    ``radius`` (bits + 1,) = 0..bits, ``precision`` and ``recall`` within each radius (mean over
    queries; precision 0 for a query with nothing inside), ``k`` (the given ks), ``ndcg``, ``p``,
    ``acg`` at those k, plus ``n_queries``, ``queries_without_relevant``, ``ties``,
    ``no_relevant`` and ``conventions``.
    """
    check_choice("no_relevant", no_relevant, NO_RELEVANT)
    ks = [int(k) for k in np.atleast_1d(np.asarray(ks))]
    if not ks or min(ks) < 1:
        raise HashbenchError(f"curve cuts ks must be positive integers; got {ks}")
    bits = _inputs.as_array(query_codes, "query_codes").shape[1]
    radii = list(range(bits + 1))
    specs = ([Metric("p@h", r) for r in radii] + [Metric("r@h", r) for r in radii]
             + [Metric(f, k) for f in ("ndcg", "p", "acg") for k in ks])
    specs = list(dict.fromkeys(specs))
    problem, ties_, per_query, n_rel, _ = _run(
        query_codes, db_codes, query_labels, db_labels, specs, ties, "retrieved", graded,
        binary, memory_budget, backend)
    means, n_missing, _ = _reduce(per_query, n_rel, no_relevant)
    return {
        "radius": np.array(radii),
        "precision": np.array([means[Metric("p@h", r)] for r in radii]),
        "recall": np.array([means[Metric("r@h", r)] for r in radii]),
        "k": np.array(ks),
        "ndcg": np.array([means[Metric("ndcg", k)] for k in ks]),
        "p": np.array([means[Metric("p", k)] for k in ks]),
        "acg": np.array([means[Metric("acg", k)] for k in ks]),
        "n_queries": problem.n_queries,
        "queries_without_relevant": n_missing,
        "ties": str(ties_),
        "no_relevant": no_relevant,
        "conventions": conventions(ties_, "retrieved", no_relevant, problem.graded_name,
                                   problem.binary_name),
    }
