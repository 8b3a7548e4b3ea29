"""The entries of ``hashbench.registry.METRICS``: the built-in families, and how a plugin adds one.

A metric name is a family with an optional cut: ``map``, ``map@5000``, ``ndcg@100``, ``p@h2``.

- The built-in families (:class:`Family` entries: map, wmap, ndcg, acg, p, p@h) are computed
  together by :func:`hashbench.metrics.evaluate` in one compiled pass over the database; calling
  an entry scores that one metric (handy in a notebook).
- A plugin registers a function ``fn(query_codes, db_codes, query_labels, db_labels, k=None)``
  returning the per-query scores, an array of shape (nq,); codes arrive as ``uint8`` arrays in
  {0, 1} of shape (n, bits), labels as multi-hot (n, C). Its names are ``<name>`` (``k=None``)
  and ``<name>@<k>`` (``k`` a positive integer). :func:`~hashbench.metrics.evaluate` averages it
  like the others (``no_relevant`` applies), and ``eval.metrics=<name>@10`` uses it in a run.
"""
from __future__ import annotations

from dataclasses import dataclass

from hashbench.registry import METRICS


@dataclass(frozen=True)
class Family:
    """A built-in family: computed by the shared pass of ``evaluate``. ``cut``: ``optional``
    (``map``, ``map@K``), ``required`` (``ndcg@k``) or ``radius`` (``p@hR``)."""

    name: str
    cut: str
    summary: str

    def __post_init__(self):
        object.__setattr__(self, "__doc__", self.summary)

    def metric_name(self, k=None) -> str:
        if self.cut == "radius":
            return f"{self.name}{2 if k is None else k}"
        return self.name if k is None else f"{self.name}@{k}"

    def __call__(self, query_codes, db_codes, query_labels, db_labels, k=None, radius=None, **options) -> float:
        """The mean over queries of this family at cut ``k`` (``radius`` for ``p@h``)."""
        from hashbench.metrics.evaluation import evaluate

        if k is None and self.cut == "required":
            k = 100
        name = self.metric_name(radius if self.cut == "radius" else k)
        return evaluate(query_codes, db_codes, query_labels, db_labels, metrics=[name], **options)[name]


BUILTIN = {
    "map": Family("map", "optional", "Mean average precision of binary relevance, full ranking (map) or top K (map@K)."),
    "wmap": Family("wmap", "optional", "Weighted mAP (DSRH): mean of ACG@p over the positions p <= K holding an "
                                       "item with r > 0."),
    "ndcg": Family("ndcg", "required", "NDCG@k with gain 2^r - 1 (r shared labels), ideal DCG from the whole "
                                       "database."),
    "acg": Family("acg", "required", "Average cumulative gain ACG@k: mean number of shared labels over the top k."),
    "p": Family("p", "required", "Precision@k: fraction of the top k sharing at least one label with the query."),
    "p@h": Family("p@h", "radius", "Precision within Hamming radius R (p@hR); 0 for a query with nothing inside "
                                   "the radius."),
}
for _name, _family in BUILTIN.items():
    METRICS.register_module(name=_name, module=_family)
