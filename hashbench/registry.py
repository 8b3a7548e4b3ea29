"""Every registry of hashbench, one line each.

Each registry has the scope ``hashbench`` and the module(s) that fill it as ``locations``: the
first lookup imports them, so building by name never depends on what happened to be imported.
Plugins register into the same objects (see :mod:`hashbench.plugins`).
"""
from __future__ import annotations

import inspect
from typing import Any

from mmengine.registry import Registry

from hashbench.errors import HashbenchError, suggest

# Hashing methods, deep and classic: hashbench.methods.<name>
METHODS = Registry("method", scope="hashbench", locations=["hashbench.methods"])
# Feature extractors (timm wrapper): hashbench.backbones
BACKBONES = Registry("backbone", scope="hashbench", locations=["hashbench.backbones"])
# Losses on relaxed codes; each lives in the file of the method that introduced it
LOSSES = Registry("loss", scope="hashbench", locations=["hashbench.methods"])
# Datasets with train / query / database splits: hashbench.datasets.<name>
DATASETS = Registry("dataset", scope="hashbench", locations=["hashbench.datasets"])
# Metric families for Hamming ranking (map, wmap, ndcg, ...): hashbench.metrics
METRICS = Registry("metric", scope="hashbench", locations=["hashbench.metrics"])
# How two label vectors become a similarity (graded, binary, cosine): hashbench.similarity
SIMILARITIES = Registry("similarity", scope="hashbench", locations=["hashbench.similarity"])

REGISTRIES = {
    "methods": METHODS,
    "datasets": DATASETS,
    "backbones": BACKBONES,
    "losses": LOSSES,
    "metrics": METRICS,
    "similarities": SIMILARITIES,
}


def entries(registry: Registry) -> dict[str, Any]:
    """All names registered in ``registry`` (importing its locations first), sorted."""
    registry.import_from_location()
    return dict(sorted(registry.module_dict.items()))


def summary(obj: Any) -> str:
    """The first line of an object's docstring: its one-line description in ``hashbench list``."""
    doc = inspect.getdoc(obj) or ""
    return doc.strip().splitlines()[0] if doc.strip() else ""


def lookup(registry: Registry, name: str) -> Any:
    """The object registered as ``name``, or a one-line error listing the valid names."""
    found = entries(registry)
    if name not in found:
        raise HashbenchError(
            f"unknown {registry.name} {name!r}; valid: {', '.join(suggest(name, found))}")
    return found[name]


def build(registry: Registry, cfg: dict | Any, **defaults: Any) -> Any:
    """Build ``cfg['type']`` from ``registry`` with the rest of ``cfg`` as keyword arguments.

    A built object passes through unchanged. Parameters are checked first against what the
    constructor declares (:func:`hashbench.params.check_params`): an unknown name or a value of the
    wrong kind is refused in one line, instead of surfacing as a ``TypeError`` deep in a traceback.
    ``defaults`` (e.g. ``n_bits``) are passed where the constructor takes them.
    """
    from hashbench.params import check_params

    if not isinstance(cfg, dict):
        return cfg
    cfg = dict(cfg)
    name = cfg.pop("type", None)
    if name is None:
        raise HashbenchError(f"a {registry.name} config needs a 'type'; got {cfg}")
    target = lookup(registry, name) if isinstance(name, str) else name
    label = f"{registry.name} {name!r}" if isinstance(name, str) else f"{registry.name} {getattr(name, '__name__', name)}"
    params = inspect.signature(target).parameters
    takes_any = any(p.kind is p.VAR_KEYWORD for p in params.values())
    given = {**{k: v for k, v in defaults.items() if takes_any or k in params}, **cfg}
    return target(**check_params(label, target, given))
