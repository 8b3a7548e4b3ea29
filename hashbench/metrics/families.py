"""The metric families in ``hashbench.registry.METRICS``, as plain functions of codes and labels.

Each takes ``(query_codes, db_codes, query_labels, db_labels)`` plus its cut or radius and any
option of :func:`hashbench.metrics.evaluate` (``ties``, ``ap_denominator``, ``no_relevant``, ...),
and returns the mean over queries as a float. They are thin wrappers: one ``evaluate`` call
computing several metrics at once shares the expensive pass over the database.
"""
from __future__ import annotations

from hashbench.metrics.evaluation import evaluate
from hashbench.registry import METRICS


def _one(name, query_codes, db_codes, query_labels, db_labels, options) -> float:
    return evaluate(query_codes, db_codes, query_labels, db_labels, metrics=[name],
                    **options)[name]


@METRICS.register_module(name="map")
def mean_average_precision(query_codes, db_codes, query_labels, db_labels, k=None, **options):
    """Mean average precision of binary relevance, full ranking (map) or top K (map@K)."""
    name = "map" if k is None else f"map@{k}"
    return _one(name, query_codes, db_codes, query_labels, db_labels, options)


@METRICS.register_module(name="wmap")
def weighted_map(query_codes, db_codes, query_labels, db_labels, k=None, **options):
    """Weighted mAP (DSRH): mean of ACG@p over the positions p <= K holding an item with r > 0."""
    name = "wmap" if k is None else f"wmap@{k}"
    return _one(name, query_codes, db_codes, query_labels, db_labels, options)


@METRICS.register_module(name="ndcg")
def ndcg(query_codes, db_codes, query_labels, db_labels, k=100, **options):
    """NDCG@k with gain 2^r - 1 (r shared labels), ideal DCG from the whole database."""
    return _one(f"ndcg@{k}", query_codes, db_codes, query_labels, db_labels, options)


@METRICS.register_module(name="acg")
def acg(query_codes, db_codes, query_labels, db_labels, k=100, **options):
    """Average cumulative gain ACG@k: mean number of shared labels over the top k."""
    return _one(f"acg@{k}", query_codes, db_codes, query_labels, db_labels, options)


@METRICS.register_module(name="p")
def precision_at_k(query_codes, db_codes, query_labels, db_labels, k=100, **options):
    """Precision@k: fraction of the top k sharing at least one label with the query."""
    return _one(f"p@{k}", query_codes, db_codes, query_labels, db_labels, options)


@METRICS.register_module(name="p@h")
def precision_within_radius(query_codes, db_codes, query_labels, db_labels, radius=2,
                            **options):
    """Precision within Hamming radius R (p@hR); 0 for a query with nothing inside the radius."""
    return _one(f"p@h{radius}", query_codes, db_codes, query_labels, db_labels, options)
