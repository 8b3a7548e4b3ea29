"""Tie-aware Hamming-ranking metrics: ``evaluate``, ``curves`` and ``conventions``.

>>> from hashbench.metrics import evaluate
>>> scores = evaluate(query_codes, db_codes, query_labels, db_labels,
...                   metrics=["map", "map@5000", "wmap@5000", "ndcg@100", "acg@100", "p@100",
...                            "p@h2"], ties="expected")                      # doctest: +SKIP

Definitions and conventions: :mod:`hashbench.metrics.evaluation` and ``docs/evaluation.md``.
Modules: ``inputs`` (checking and bit-packing), ``hamming`` (compiled popcount / histogram
kernels), ``ranking`` (formulas from tie groups), ``torch_backend`` (the GPU path),
``families`` (the entries of ``hashbench.registry.METRICS``).
"""
from hashbench.metrics.evaluation import (
    AP_DENOMINATORS,
    DEFAULT_CURVE_KS,
    DEFAULT_MEMORY_BUDGET,
    DEFAULT_METRICS,
    METRIC_FORMS,
    NO_RELEVANT,
    Metric,
    conventions,
    curves,
    evaluate,
    parse_metric,
)
from hashbench.metrics import families  # noqa: F401  (fills hashbench.registry.METRICS)
from hashbench.metrics.hamming import hamming_histograms
from hashbench.metrics.inputs import TIE_POLICIES, pack_bits, parse_ties

__all__ = [
    "AP_DENOMINATORS", "DEFAULT_CURVE_KS", "DEFAULT_MEMORY_BUDGET", "DEFAULT_METRICS",
    "METRIC_FORMS", "NO_RELEVANT", "TIE_POLICIES", "Metric", "conventions", "curves", "evaluate",
    "hamming_histograms", "pack_bits", "parse_metric", "parse_ties",
]
