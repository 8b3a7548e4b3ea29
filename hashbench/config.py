"""Run configuration: mmengine Python config files composed with ``key=value`` words.

A run starts from ``configs/default.py`` (or ``config=FILE``), which inherits the runtime,
dataset, backbone and schedule files under ``configs/_base_/`` via ``_base_``. Then:

- ``dataset=NAME`` replaces the dataset block with ``configs/datasets/NAME.py`` (or
  ``dict(type=NAME)`` for a registered dataset without a config file);
- each method of ``methods=a,b`` contributes ``configs/methods/NAME.py`` (or ``dict(type=NAME)``),
  merged into its own copy of the run config;
- dotted words set any key of a section: ``backbone.name=resnet18``, ``method.margin=2``,
  ``train.lr=3e-4``, ``dataset.n_train=500``, ``eval.ties=index``.
"""
from __future__ import annotations

import ast
import copy
from importlib.resources import files
from pathlib import Path
from typing import Any

from mmengine.config import Config

from hashbench.errors import HashbenchError, suggest
from hashbench.registry import DATASETS, METHODS, entries

CONFIG_ROOT = Path(str(files("hashbench.configs")))

# Top-level words of `hashbench run`, with the help text `hashbench run --help` shows.
RUN_KEYS = {
    "methods": "comma-separated method names (configs/methods/NAME.py or any registered method); default dsrh",
    "dataset": "dataset name (configs/datasets/NAME.py or any registered dataset); default multidigits",
    "bits": "code lengths, comma-separated, each 1..1024; default 16,32,48,64",
    "seeds": "seeds, comma-separated non-negative integers; default 0",
    "epochs": "training epochs (shorthand for train.epochs)",
    "device": "auto (CUDA when present, else CPU), cpu, cuda or cuda:N; default auto",
    "out": "output folder: results.jsonl is appended to (runs already there are skipped), codes/ saved, "
           "tables-<run>.md written; default out",
    "data_root": "dataset folder (shorthand for dataset.data_root)",
    "plugins": "modules or .py files to import first (they register methods, datasets, ...)",
    "config": "config file to start from instead of configs/default.py",
    "force": "true: recompute runs already in out/results.jsonl (default false: they are skipped)",
    "launcher": "none (one process, default) or pytorch (under torchrun: DDP, DSRH triplets over the global batch)",
    "blas_threads": "BLAS threads while classic methods fit and encode (default: the BLAS library's own; "
                    "1 is faster on small machines, where threads of many small products wait on busy cores)",
}
SECTIONS = {
    "method": "parameters of every method in the run, e.g. method.margin=2",
    "backbone": "timm backbone, e.g. backbone.name=resnet18 backbone.checkpoint=/path/weights.pth",
    "dataset": "dataset parameters, e.g. dataset.n_train=500",
    "train": "optimisation, e.g. train.lr=3e-4 train.batch_size=128 train.precision=bf16",
    "eval": "evaluation, e.g. eval.ties=index eval.metrics=map,ndcg@100",
    "classic": "classic methods' input: classic.features=backbone (frozen backbone, default) or pixels",
}
LIST_KEYS = {"methods", "bits", "seeds", "plugins", "eval.metrics", "eval.tables", "metrics", "ks"}

# Words of the commands that read an out= folder. Filters (methods, dataset, bits, seeds) take lists.
_FILTERS = {
    "methods": "only these methods (comma-separated); default all stored",
    "dataset": "only these datasets (comma-separated); default all stored",
    "bits": "only these code lengths; default all stored",
    "seeds": "only these seeds; default all stored",
}
EVAL_KEYS = {
    "out": "the output folder of earlier runs (results.jsonl, codes/); default out",
    "metrics": "metrics to compute from the saved codes, e.g. map,p@10,ndcg@50 (default: each run's own)",
    **_FILTERS,
    "force": "true: re-evaluate metrics that are already stored (default false: only missing ones)",
    "plugins": "modules or .py files to import first",
}
EVAL_SECTIONS = {"eval": "evaluation conventions, e.g. eval.ties=index eval.no_relevant=skip "
                         "eval.ap_denominator=min_r_k eval.tables=map,p@10"}
TABLE_KEYS = {
    "out": "the output folder holding results.jsonl; default out",
    "format": "markdown (default), latex or csv",
    "metrics": "metrics to tabulate (default: the runs' eval.tables)",
    **_FILTERS,
}
PLOT_KEYS = {
    "out": "the output folder holding results.jsonl and codes/; default out",
    "to": "folder for the PNG files; default OUT/figures",
    "metrics": "metrics plotted against code length (default: the runs' eval.tables)",
    **_FILTERS,
    "ks": "cuts k of the NDCG@k and P@k curves (default 1,10,20,50,100,200,500,1000,2000,5000, "
          "up to the database size)",
}
FILTER_LIST_KEYS = LIST_KEYS | {"dataset"}


def parse_value(text: str) -> Any:
    """A word's value: bool/None words, numbers, Python literals, else the string itself."""
    low = text.lower()
    if low in ("true", "false"):
        return low == "true"
    if low in ("none", "null"):
        return None
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def parse_words(words: list[str], keys: dict[str, str] = RUN_KEYS, sections: dict[str, str] = SECTIONS,
                lists: set[str] = LIST_KEYS) -> dict[str, Any]:
    """``key=value`` words → dict; lists split on commas; unknown keys refused with suggestions.

    ``keys`` and ``sections`` are the words a command accepts (``hashbench run``'s by default);
    ``lists`` the keys whose values are comma-separated lists.
    """
    valid = list(keys) + [f"{s}.<key>" for s in sections]
    out: dict[str, Any] = {}
    for word in words:
        if "=" not in word:
            where = f", or section.key for sections {', '.join(sections)}" if sections else ""
            raise HashbenchError(f"expected key=value, got {word!r}; keys: {', '.join(keys)}{where}")
        key, _, raw = word.partition("=")
        head = key.split(".", 1)[0]
        if key not in keys and not ("." in key and head in sections):
            raise HashbenchError(f"unknown key {key!r}; valid: {', '.join(suggest(key, valid))}")
        if raw == "":
            raise HashbenchError(f"{key}= has no value")
        if key in lists:
            out[key] = [parse_value(v) for v in raw.split(",") if v != ""]
        else:
            out[key] = parse_value(raw)
    for key in ("bits", "seeds"):
        if key in out:
            out[key] = [_check_int(key, v) for v in out[key]]
    if "epochs" in out:
        out["epochs"] = _check_int("epochs", out["epochs"], low=1, high=100000)
    if "blas_threads" in out:
        out["blas_threads"] = _check_int("blas_threads", out["blas_threads"], low=1, high=4096)
    if "ks" in out:
        out["ks"] = [_check_int("ks", v, low=1, high=2**31 - 1) for v in out["ks"]]
    if "force" in out and not isinstance(out["force"], bool):
        raise HashbenchError(f"force must be true or false; got {out['force']!r}")
    for key in ("out", "to", "format"):
        if key in out:
            out[key] = str(out[key])
    for key in ("dataset", "metrics"):
        if key in out and isinstance(out[key], list):
            out[key] = [str(v) for v in out[key]]
    return out


def _check_int(key: str, value: Any, low: int | None = None, high: int | None = None) -> int:
    limits = {"bits": (1, 1024), "seeds": (0, 2**32 - 1)}
    lo, hi = limits.get(key, (low, high))
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise HashbenchError(f"{key} must be integers in {lo}..{hi}; got {value!r}")
    return value


def _load(path: Path) -> dict:
    try:
        return Config.fromfile(str(path)).to_dict()
    except FileNotFoundError:
        raise HashbenchError(f"config file {str(path)!r} does not exist") from None


def _merge(base: dict, extra: dict) -> dict:
    out = copy.deepcopy(base)
    for k, v in extra.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict) and not v.get("_delete_"):
            out[k] = _merge(out[k], v)
        else:
            out[k] = copy.deepcopy({kk: vv for kk, vv in v.items() if kk != "_delete_"}
                                   if isinstance(v, dict) else v)
    return out


def _set(cfg: dict, dotted: str, value: Any) -> None:
    *parents, leaf = dotted.split(".")
    node = cfg
    for p in parents:
        node = node.setdefault(p, {})
        if not isinstance(node, dict):
            raise HashbenchError(f"cannot set {dotted!r}: {p!r} is not a section")
    node[leaf] = value


def available(kind: str) -> list[str]:
    """Names accepted for ``methods=`` (kind "methods") or ``dataset=`` (kind "datasets")."""
    registry = METHODS if kind == "methods" else DATASETS
    from_files = [p.stem for p in (CONFIG_ROOT / kind).glob("*.py") if not p.stem.startswith("_")]
    return sorted(set(from_files) | set(entries(registry)))


def _part(kind: str, name: str, block: str) -> dict:
    """The config contributed by a method or dataset name."""
    if not isinstance(name, str):
        raise HashbenchError(f"{kind[:-1]} names are strings; got {name!r}")
    path = CONFIG_ROOT / kind / f"{name}.py"
    if path.exists():
        return _load(path)
    registry = METHODS if kind == "methods" else DATASETS
    if name in entries(registry):
        return {block: dict(type=name)}
    raise HashbenchError(f"unknown {kind[:-1]} {name!r}; valid: {', '.join(suggest(name, available(kind)))}")


def build_run_config(words: dict[str, Any]) -> dict:
    """The resolved run config (without per-method parts) from parsed ``key=value`` words."""
    start = Path(words["config"]) if "config" in words else CONFIG_ROOT / "default.py"
    cfg = _load(start)
    if "dataset" in words:
        part = _part("datasets", words["dataset"], "dataset")
        cfg["dataset"] = part.pop("dataset")
        cfg = _merge(cfg, part)
    cfg["dataset_name"] = words.get("dataset", cfg["dataset"]["type"])
    for key in ("methods", "bits", "seeds", "device", "out", "plugins", "force", "launcher", "blas_threads"):
        if key in words:
            cfg[key] = words[key]
    if "epochs" in words:
        _set(cfg, "train.epochs", words["epochs"])
    if "data_root" in words:
        _set(cfg, "dataset.data_root", words["data_root"])
    cfg["method_overrides"] = {}
    for key, value in words.items():
        if "." in key:
            section, rest = key.split(".", 1)
            if section == "method":
                cfg["method_overrides"][rest] = value
            else:
                _set(cfg, key, value)
    if not cfg.get("methods"):
        raise HashbenchError("no methods to run; pass methods=NAME[,NAME...]")
    return cfg


def _accepts(method_type: Any, key: str) -> bool:
    import inspect

    from hashbench.registry import lookup

    target = lookup(METHODS, method_type) if isinstance(method_type, str) else method_type
    params = inspect.signature(target).parameters
    return key in params or any(p.kind is p.VAR_KEYWORD for p in params.values())


def method_config(cfg: dict, name: str) -> dict:
    """``cfg`` merged with method ``name``'s config and those ``method.*`` words it takes."""
    part = _part("methods", name, "method")
    if "method" not in part:
        raise HashbenchError(f"configs/methods/{name}.py defines no 'method' dict")
    merged = _merge(cfg, part)
    for key, value in cfg.get("method_overrides", {}).items():
        if _accepts(merged["method"]["type"], key.split(".")[0]):
            _set(merged["method"], key, value)
    merged["method_name"] = name
    return merged


def method_configs(cfg: dict) -> dict[str, dict]:
    """Every method of the run, configured; a ``method.KEY`` word that no method takes is an error."""
    import inspect

    from hashbench.registry import lookup

    out = {name: method_config(cfg, name) for name in cfg["methods"]}
    for key in cfg.get("method_overrides", {}):
        if not any(_accepts(m["method"]["type"], key.split(".")[0]) for m in out.values()):
            first = next(iter(out.values()))["method"]["type"]
            params = [p for p in inspect.signature(lookup(METHODS, first)).parameters if p != "n_bits"]
            raise HashbenchError(f"no method in this run takes method.{key}; {first} takes: "
                                 f"{', '.join(suggest(key, params))}")
    return out
