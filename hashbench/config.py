"""Run configuration: mmengine Python config files composed with ``key=value`` words, then checked.

A run starts from ``configs/default.py`` (or ``config=FILE``), which inherits the runtime,
dataset, backbone and schedule files under ``configs/_base_/`` via ``_base_``
(``mmengine.config.Config.fromfile``). Then:

- ``dataset=NAME`` replaces the dataset block with ``configs/datasets/NAME.py`` (or
  ``dict(type=NAME)`` for a registered dataset without a config file);
- each method of ``methods=a,b`` contributes ``configs/methods/NAME.py`` (or ``dict(type=NAME)``),
  merged into its own copy of the run config;
- dotted words set any key of a section (mmengine's ``merge_from_dict``): ``backbone.name=resnet18``,
  ``method.margin=2``, ``train.lr=3e-4``, ``dataset.n_train=500``, ``eval.ties=index``.

Everything is checked before any data is loaded, against the declared schemas
(:mod:`hashbench.settings` for ``train``, ``eval``, ``classic`` and the top-level keys; the
registered class a ``type`` names for ``backbone``, ``dataset`` and ``method``): an unknown key
is refused naming the closest valid one, a value of the wrong kind or range naming what is valid.

One word parser (:func:`parse_words`) serves every command; each declares its words as a
:class:`Words` table.
"""
from __future__ import annotations

import ast
import copy
import traceback
from dataclasses import dataclass, field
from importlib.resources import files
from pathlib import Path
from typing import Any

from mmengine.config import Config, DictAction

from hashbench.errors import HashbenchError, suggest
from hashbench.params import Field, Flag, Interval, ListOf, Options, check, check_params, required_params
from hashbench.registry import BACKBONES, DATASETS, METHODS, build, entries, lookup
from hashbench.results import check_out_folder
from hashbench.settings import CLASSIC, EVAL, RUN, SUBMIT, TRAIN
from hashbench.train_log import require as require_log

CONFIG_ROOT = Path(str(files("hashbench.configs")))
SECTION_NAMES = ("train", "eval", "classic", "submit", "backbone", "dataset", "method")


# ------------------------------------------------------------------------------ words
@dataclass
class Words:
    """The ``key=value`` words one command accepts.

    ``keys``: name → :class:`~hashbench.params.Field` (constraints and help); ``sections``: dotted
    prefixes accepted (``train`` admits ``train.lr=...``), with help; ``lists``: keys whose values
    are comma-separated lists (a single value becomes a one-element list); ``free``: other keys
    are collected for a later check (``data``: the dataset's own parameters), else refused.
    """

    keys: dict[str, Field]
    sections: dict[str, str] = field(default_factory=dict)
    lists: frozenset = frozenset()
    free: str | None = None


def parse_value(text: str) -> Any:
    """A word's value, parsed as mmengine's ``DictAction`` does (numbers, true/false, None, lists
    on commas, Python literals), and ``none``/``null`` in any case as None."""
    if text.strip().lower() in ("none", "null"):
        return None
    value = DictAction._parse_iterable(text)
    return list(value) if isinstance(value, tuple) else value


def parse_words(words: list[str], spec: "Words | None" = None) -> dict[str, Any]:
    """``key=value`` words → dict, each top-level value checked against its field; dotted words
    kept for their section's check; unknown keys refused with the closest valid ones first.
    ``spec`` defaults to :data:`RUN_WORDS`."""
    spec = RUN_WORDS if spec is None else spec
    valid = list(spec.keys) + [f"{s}.<key>" for s in spec.sections]
    out: dict[str, Any] = {}
    for word in words:
        if "=" not in word:
            where = f", or section.key for sections {', '.join(spec.sections)}" if spec.sections else ""
            raise HashbenchError(f"expected key=value, got {word!r}; keys: {', '.join(spec.keys)}{where}")
        key, _, raw = word.partition("=")
        head = key.split(".", 1)[0]
        known = key in spec.keys or ("." in key and head in spec.sections and key.split(".", 1)[1] != "")
        if not known and not (spec.free and "." not in key and key):
            raise HashbenchError(f"unknown key {key!r}; valid: {', '.join(suggest(key, valid))}")
        if raw == "":
            raise HashbenchError(f"{key}= has no value")
        value = parse_value(raw)
        if key in spec.lists and not isinstance(value, list):
            value = [value]
        if key in spec.keys:
            value = check(key, value, spec.keys[key].constraints)
        out[key] = value
    return out


def _filters() -> dict[str, Field]:
    return {
        "methods": Field([ListOf(str, 1)], None, "only these methods (comma-separated); default all stored"),
        "dataset": Field([ListOf(str, 1)], None, "only these datasets (comma-separated); default all stored"),
        "bits": Field([ListOf(Interval(int, 1, 1024), 1)], None, "only these code lengths; default all stored"),
        "seeds": Field([ListOf(Interval(int, 0, 2**32 - 1), 1)], None, "only these seeds; default all stored"),
    }


_LISTS = frozenset({"methods", "bits", "seeds", "plugins", "metrics", "ks", "dataset"})

RUN_WORDS = Words(
    keys={
        "methods": Field([ListOf(str, 1)], None, "comma-separated method names (configs/methods/NAME.py or any "
                                                 "registered method); default: the config's (configs/default.py)"),
        "dataset": Field([str], None, "dataset name (configs/datasets/NAME.py or any registered dataset); "
                                      "default: the config's (configs/default.py)"),
        "bits": Field(RUN.fields["bits"].constraints, None, "code lengths, comma-separated, each 1..1024; "
                                                           "default 16,32,48,64"),
        "seeds": Field(RUN.fields["seeds"].constraints, None, "seeds, comma-separated non-negative integers; "
                                                             "default 0"),
        "epochs": Field(TRAIN.fields["epochs"].constraints, None, "training epochs (shorthand for train.epochs)"),
        "device": Field([str], None, "auto (CUDA when present, else CPU), cpu, cuda or cuda:N (one process only); default auto"),
        "out": Field([str], None, "output folder: results.jsonl is appended to (runs already there are skipped), "
                                  "codes/ saved, tables-<run>.md written; default out"),
        "data_root": Field([str], None, "dataset folder (shorthand for dataset.data_root)"),
        "plugins": Field([ListOf(str)], None, "modules or .py files to import first (they register methods, "
                                              "datasets, ...)"),
        "config": Field([str], None, "config file to start from instead of configs/default.py"),
        "force": Field([Flag()], None, "true: recompute runs already in out/results.jsonl (default false: they "
                                       "are skipped)"),
        "launcher": Field(RUN.fields["launcher"].constraints, None,
                          "none (one process, default), pytorch (under torchrun: DDP over the global batch) or "
                          "submitit (a job array of workers on out=, submit.* below; pip install 'hashbench[cluster]')"),
        "workers": Field(RUN.fields["workers"].constraints, None,
                         "N worker processes share the sweep on this machine (one GPU each when there are GPUs, "
                         "else the CPU cores divided between them); default 1"),
        "claim_timeout": Field(RUN.fields["claim_timeout"].constraints, None,
                               "seconds a run's claim lives without a heartbeat before another worker takes the run "
                               "over from its checkpoint; default 300"),
        "blas_threads": Field([Interval(int, 1, 4096)], None,
                              "BLAS threads while classic methods fit and encode (default: the BLAS library's own; "
                              "1 is faster on small machines, where threads of many small products wait on busy "
                              "cores)"),
    },
    sections={
        "method": "parameters of every method in the run that takes them, e.g. method.margin=2",
        "backbone": "backbone, e.g. backbone.name=resnet18 backbone.checkpoint=/path/weights.pth",
        "dataset": "dataset parameters, e.g. dataset.n_train=500",
        "train": "optimisation, e.g. train.lr=3e-4 train.batch_size=128 train.precision=bf16",
        "eval": "evaluation, e.g. eval.ties=index eval.metrics=map,ndcg@100",
        "classic": "classic methods' input: classic.features=backbone (frozen backbone, default) or pixels",
        "submit": "launcher=submitit's job array, e.g. submit.partition=gpu submit.gpus_per_task=1 "
                  "submit.tasks=8 submit.timeout_min=600 submit.cluster=local",
    },
    lists=_LISTS - {"dataset"} | {"eval.metrics", "eval.tables"},
)
EVAL_WORDS = Words(
    keys={
        "out": Field([str, ListOf(str, 1)], None, "the output folder of earlier runs (results.jsonl, codes/), or "
                                                  "several (a,b): each re-scored into its own, the tables of all "
                                                  "printed as one; default out"),
        "metrics": Field([ListOf(str, 1)], None, "metrics to compute from the saved codes, e.g. map,p@10,ndcg@50 "
                                                 "(default: each run's own)"),
        **_filters(),
        "force": Field([Flag()], None, "true: re-evaluate metrics that are already stored (default false: only "
                                       "missing ones)"),
        "plugins": Field([ListOf(str)], None, "modules or .py files to import first"),
    },
    sections={"eval": "evaluation conventions, e.g. eval.ties=index eval.no_relevant=skip "
                      "eval.ap_denominator=min_r_k eval.tables=map,p@10"},
    lists=_LISTS | {"eval.metrics", "eval.tables"},
)
def _bootstrap() -> dict:
    return {
        "resamples": Field([Interval(int, 100, 1_000_000)], None, "bootstrap resamples for intervals and tests "
                                                                  "(default 2000)"),
        "bootstrap_seed": Field([Interval(int, 0, 2**32 - 1)], None, "seed of the bootstrap draws (default 0)"),
    }


TABLE_WORDS = Words(
    keys={
        "out": Field([str, ListOf(str, 1)], None, "the output folder holding results.jsonl, or several (a,b) read "
                                                  "as one; default out"),
        "format": Field([Options("markdown", "latex", "csv", "html")], None,
                        "markdown (default), latex, csv or html (<table> fragments)"),
        "metrics": Field([ListOf(str, 1)], None, "metrics to tabulate (default: the runs' eval.tables)"),
        **_filters(),
        "ci": Field([Flag()], None, "true: each cell is mean [lo, hi], a 95% two-stage bootstrap interval over "
                                    "seeds and queries (csv: lo, hi columns); default false: mean ± std"),
        **_bootstrap(),
    },
    lists=_LISTS,
)
COMPARE_WORDS = Words(
    keys={
        "out": Field([str, ListOf(str, 1)], None, "the output folder holding results.jsonl, or several (a,b) read "
                                                  "as one; default out"),
        "methods": Field([ListOf(str, 1)], None, "the two methods to compare, A,B (the difference is A minus B)"),
        "metric": Field([str], None, "the metric compared, e.g. ndcg@100 (default map)"),
        **{k: v for k, v in _filters().items() if k != "methods"},
        **_bootstrap(),
    },
    lists=_LISTS,
)
PLOT_WORDS = Words(
    keys={
        "out": Field([str, ListOf(str, 1)], None, "the output folder holding results.jsonl and codes/, or several "
                                                  "(a,b) read as one; default out"),
        "to": Field([str], None, "folder for the PNG files; default OUT/figures"),
        "metrics": Field([ListOf(str, 1)], None, "metrics plotted against code length (default: the runs' "
                                                 "eval.tables)"),
        **_filters(),
        "ks": Field([ListOf(Interval(int, 1, 2**31 - 1), 1)], None,
                    "cuts k of the NDCG@k and P@k curves (default 1,10,20,50,100,200,500,1000,2000,5000, up to "
                    "the database size)"),
    },
    lists=_LISTS,
)
REPORT_WORDS = Words(
    keys={
        "out": Field([str, ListOf(str, 1)], None, "the output folder holding results.jsonl and codes/, or several "
                                                  "(a,b) read as one; default out"),
        "to": Field([str], None, "the HTML file written; default OUT/report.html"),
        "metrics": Field([ListOf(str, 1)], None, "metrics tabulated and plotted (default: the runs' eval.tables)"),
        **_filters(),
        "queries": Field([ListOf(Interval(int, 0, 2**31 - 1), 1)], None,
                         "retrieval examples for these query indices (default: a seeded choice of n_queries)"),
        "n_queries": Field([Interval(int, 1, 100)], None, "how many queries the examples show (default 5)"),
        "query_seed": Field([Interval(int, 0, 2**32 - 1)], None, "seed of the choice of queries (default 0)"),
        "topk": Field([Interval(int, 1, 100)], None, "database items shown per method and query (default 8)"),
        "example_bits": Field([Interval(int, 1, 1024)], None,
                              "code length of the retrieval examples (default: the longest stored)"),
        **_bootstrap(),
        "plugins": Field([ListOf(str)], None, "modules or .py files to import first (plugin datasets and methods)"),
    },
    lists=_LISTS | {"queries"},
)
STATUS_WORDS = Words(
    keys={
        "out": Field([str], None, "the sweep's output folder; default out"),
        "run": Field([str], None, "the sweep (its run id) to show; default the latest planned into out="),
        "all": Field([Flag()], None, "true: list the done runs too (default: only their count)"),
    },
)
DATA_WORDS = Words(
    keys={
        "dataset": Field([str], None, "the dataset, e.g. mirflickr25k (hashbench list datasets)"),
        "workers": Field([Interval(int, 0, None), None], None, "decoding worker processes (default: by size)"),
        "decode": Field([Flag()], None, "verify: fully decode every image (default true)"),
        "split": Field([str], None, "time: the split to read (default train)"),
        "batch_size": Field([Interval(int, 1, None)], None, "time: batch size (default 64)"),
        "threads": Field([Interval(int, 1, None)], None, "time: torch threads (default 1)"),
    },
    free="dataset parameters",
)


# ------------------------------------------------------------------------------ config files
def _syntax_error_in(path: Path, seen: set | None = None) -> tuple[Path, SyntaxError] | None:
    """The file (``path`` or one of its ``_base_`` files) that does not parse, and the error."""
    seen = set() if seen is None else seen
    if path in seen or not path.is_file():
        return None
    seen.add(path)
    try:
        tree = ast.parse(path.read_text(), filename=str(path))
    except SyntaxError as e:
        return path, e
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "_base_" for t in node.targets):
            try:
                bases = ast.literal_eval(node.value)
            except ValueError:
                return None
            for base in [bases] if isinstance(bases, str) else bases:
                found = _syntax_error_in((path.parent / base).resolve(), seen)
                if found:
                    return found
    return None


def load_file(path: Path) -> dict:
    """A config file (with its ``_base_`` files) as a dict; any failure is one line naming the
    file (and the line) at fault."""
    path = Path(path)
    if not path.is_file():
        raise HashbenchError(f"config file {str(path)!r} does not exist")
    try:
        return Config.fromfile(str(path)).to_dict()
    except FileNotFoundError as e:
        raise HashbenchError(f"config file {str(path)!r}: its _base_ {e.filename!r} does not exist") from None
    except SyntaxError as e:
        where, err = _syntax_error_in(path.resolve()) or (path, e)
        raise HashbenchError(f"config file {str(where)!r} line {err.lineno}: {err.msg}") from None
    except Exception as e:  # noqa: BLE001 - whatever the file's code raised, say where
        frames = [f for f in traceback.extract_tb(e.__traceback__) if f.filename.endswith(".py")
                  and "mmengine" not in f.filename and Path(f.filename).resolve() != Path(__file__).resolve()]
        where = f"config file {frames[-1].filename!r} line {frames[-1].lineno}" if frames else \
            f"config file {str(path)!r}"
        raise HashbenchError(f"{where}: {type(e).__name__}: {e}".splitlines()[0]) from None


def _merge(base: dict, extra: dict) -> dict:
    """``extra`` over ``base``, dicts merged key by key — except under ``_delete_=True`` or when
    ``extra`` gives a block another ``type``: the base's other keys belong to the old type, so the
    block is replaced (``backbone.type=torchvision`` does not inherit timm's ``lower_stage``)."""
    out = copy.deepcopy(base)
    for k, v in extra.items():
        retyped = isinstance(v, dict) and isinstance(out.get(k), dict) and "type" in v \
            and v["type"] != out[k].get("type")
        if isinstance(v, dict) and isinstance(out.get(k), dict) and not v.get("_delete_") and not retyped:
            out[k] = _merge(out[k], v)
        else:
            out[k] = copy.deepcopy({kk: vv for kk, vv in v.items() if kk != "_delete_"}
                                   if isinstance(v, dict) else v)
    return out


def available(kind: str) -> list[str]:
    """Names accepted for ``methods=`` (kind "methods") or ``dataset=`` (kind "datasets")."""
    registry = METHODS if kind == "methods" else DATASETS
    from_files = [p.stem for p in (CONFIG_ROOT / kind).glob("*.py") if not p.stem.startswith("_")]
    return sorted(set(from_files) | set(entries(registry)))


def _part(kind: str, name: Any, block: str) -> dict:
    """The config contributed by a method or dataset name."""
    if not isinstance(name, str):
        raise HashbenchError(f"{kind[:-1]} names are strings; got {name!r}")
    path = CONFIG_ROOT / kind / f"{name}.py"
    if path.exists():
        return load_file(path)
    registry = METHODS if kind == "methods" else DATASETS
    if name in entries(registry):
        return {block: dict(type=name)}
    raise HashbenchError(f"unknown {kind[:-1]} {name!r}; valid: {', '.join(suggest(name, available(kind)))}")


def dataset_preset(name: Any) -> tuple[dict, dict]:
    """What ``dataset=NAME`` stands for: the dataset block of ``configs/datasets/NAME.py`` (a preset,
    e.g. ``coco`` over ``listfile``) or ``dict(type=NAME)`` for a registered dataset, and the rest of
    the preset file (its ``eval`` section, ...), which ``hashbench run`` merges into the config."""
    part = _part("datasets", name, "dataset")
    if "dataset" not in part:
        raise HashbenchError(f"configs/datasets/{name}.py defines no 'dataset' dict")
    block = part.pop("dataset")
    return block, part


# ------------------------------------------------------------------------------ checks of sections
def _check_block(section: str, registry, block: Any, prefix: str | None = None) -> dict:
    """A backbone/dataset/method block: its ``type`` registered, its parameters the class's
    (named ``<prefix><key>`` in messages, ``<section>.`` by default)."""
    if not isinstance(block, dict):
        raise HashbenchError(f"{section} must be a dict with a 'type'; got {block!r}")
    if "type" not in block:
        raise HashbenchError(f"{section} needs a 'type' (hashbench list {registry.name}s); got {block!r}")
    target = lookup(registry, block["type"])
    params = {k: v for k, v in block.items() if k != "type"}
    checked = check_params(f"{registry.name} {block['type']!r}", target, params,
                           prefix=f"{section}." if prefix is None else prefix)
    return {"type": block["type"], **checked}


def check_dataset(block: dict, prefix: str = "dataset.", name: str | None = None) -> dict:
    """A dataset block checked, its required parameters (``data_root``) present; ``name`` is the
    preset the user named, when the block came from one (``coco`` for a ``listfile`` block)."""
    block = _check_block("dataset", DATASETS, block, prefix)
    missing = [p for p in required_params(lookup(DATASETS, block["type"])) if p not in block]
    if missing:
        what = f"{name!r} ({block['type']})" if name and name != block["type"] else repr(block["type"])
        raise HashbenchError(f"dataset {what} needs {prefix}{missing[0]} (e.g. {missing[0]}=DIR "
                             f"on the command line)")
    return block


def check_eval(ev: dict) -> dict:
    """The eval section with defaults, every metric name resolved and the tables among the metrics
    (the default tables keep those of the metrics that are computed, or the first four metrics)."""
    from hashbench.metrics import conventions, parse_metric

    ev = EVAL.check(ev)
    for m in ev["metrics"]:
        parse_metric(m)
    if ev["tables"] == EVAL.fields["tables"].default:  # the default tables follow the metrics asked for
        ev["tables"] = [t for t in ev["tables"] if t in ev["metrics"]] or list(ev["metrics"][:4])
    for t in ev["tables"]:
        parse_metric(t)
        if t not in ev["metrics"]:
            raise HashbenchError(f"eval.tables names {t!r}, which is not in eval.metrics "
                                 f"({', '.join(ev['metrics'])}); add it there or table one of those")
    conventions(ties=ev["ties"], ap_denominator=ev["ap_denominator"], no_relevant=ev["no_relevant"])
    return ev


def check_device(name: str) -> str:
    import re

    if not re.fullmatch(r"auto|cpu|cuda(:\d+)?", name):
        raise HashbenchError(f"device must be auto, cpu, cuda or cuda:N; got {name!r}")
    return name


def _check_run(cfg: dict, dataset_name: str | None = None) -> dict:
    """Every top-level key and section of a composed run config, checked (not filled: the
    sections stay as written, which is what the config hash is made of); ``dataset_name`` is the
    ``dataset=`` word, for messages."""
    for key in cfg:
        if key not in RUN.fields:
            raise HashbenchError(f"unknown top-level key {key!r} in the config; valid: "
                                 f"{', '.join(suggest(str(key), RUN.fields))}")
    if not cfg.get("methods"):
        raise HashbenchError("no methods to run; pass methods=NAME[,NAME...] or set methods in the config")
    out = dict(cfg)
    for key, f in RUN.fields.items():
        if key in SECTION_NAMES or key == "custom_imports":
            continue
        out[key] = check(key, cfg[key], f.constraints) if key in cfg else f.default
    check_device(out["device"])
    check_out_folder(out["out"])
    out["train"] = TRAIN.check(cfg.get("train"), fill=False)
    out["classic"] = CLASSIC.check(cfg.get("classic"), fill=False)
    out["submit"] = SUBMIT.check(cfg.get("submit"))
    if out["workers"] > 1 and out["launcher"] != "none":
        raise HashbenchError(f"workers={out['workers']} starts one-process workers on this machine and cannot be "
                             f"combined with launcher={out['launcher']}; a job array's size is submit.tasks, and a "
                             "worker that is itself a DDP run is submit.gpus_per_task=N (or torchrun per worker, "
                             "see the README)")
    spread = (f"workers={out['workers']}" if out["workers"] > 1 else
              f"launcher={out['launcher']}" if out["launcher"] != "none" else None)
    if spread and out["device"].startswith("cuda:"):
        # Each worker / rank is given its own GPU (CUDA_VISIBLE_DEVICES, LOCAL_RANK), where one index
        # would be another GPU in every process, or none.
        raise HashbenchError(f"device={out['device']} names one GPU, but {spread} gives each process its own; use "
                             "device=cuda (or auto) and choose the GPUs with CUDA_VISIBLE_DEVICES")
    out["eval"] = check_eval(cfg.get("eval"))
    out["backbone"] = _check_block("backbone", BACKBONES, cfg.get("backbone"))
    from hashbench.backbones import input_geometry

    input_geometry(out["backbone"])  # a size the model cannot take is refused now, not when built
    out["dataset"] = check_dataset(cfg.get("dataset"), name=dataset_name)
    if "method" in cfg and not isinstance(cfg["method"], dict):
        raise HashbenchError(f"method must be a dict; got {cfg['method']!r}")
    return out


# ------------------------------------------------------------------------------ the run config
@dataclass
class RunConfig:
    """A checked run: ``cfg`` (the composed config, as the user's files and words resolve it, with
    the top-level defaults and the eval section filled in), the dataset's name and the
    ``method.KEY`` words (given to every method of the run that takes them)."""

    cfg: dict
    dataset_name: str
    method_overrides: dict = field(default_factory=dict)
    methods: dict = field(default_factory=dict)  # name -> per-method config, filled by build_run_config

    def method_config(self, name: str) -> dict:
        """``cfg`` merged with method ``name``'s config and those ``method.*`` words it takes,
        the method block checked against the method's parameters."""
        part = _part("methods", name, "method")
        if "method" not in part:
            raise HashbenchError(f"configs/methods/{name}.py defines no 'method' dict")
        merged = _check_run(_merge(self.cfg, part))
        target = lookup(METHODS, merged["method"].get("type"))
        for key, value in self.method_overrides.items():
            if _accepts(target, key.split(".")[0]):
                merged["method"] = _merge(merged["method"], _nested(key, value))
        merged["method"] = _check_block("method", METHODS, merged["method"])
        return merged

    def method_configs(self) -> dict[str, dict]:
        """Every method of the run, configured; a ``method.KEY`` word no method takes is refused."""
        import inspect

        out = {name: self.method_config(name) for name in self.cfg["methods"]}
        for key in self.method_overrides:
            head = key.split(".")[0]
            if head in ("n_bits", "random_state"):
                raise HashbenchError(f"method.{head} is set by {'bits' if head == 'n_bits' else 'seeds'}=, "
                                     "not as a method parameter")
            if not any(_accepts(lookup(METHODS, m["method"]["type"]), head) for m in out.values()):
                first = next(iter(out.values()))["method"]["type"]
                params = [p for p in inspect.signature(lookup(METHODS, first)).parameters
                          if p not in ("n_bits", "random_state")]
                raise HashbenchError(f"no method in this run takes method.{key}; {first} takes: "
                                     f"{', '.join(suggest(key, params))}")
        return out


def _nested(dotted: str, value: Any) -> dict:
    out: Any = value
    for part in reversed(dotted.split(".")):
        out = {part: out}
    return out


def _accepts(target: Any, key: str) -> bool:
    import inspect

    params = inspect.signature(target).parameters
    return key in params or any(p.kind is p.VAR_KEYWORD for p in params.values())


def build_run_config(words: dict[str, Any], *, import_plugins=None) -> RunConfig:
    """The checked run config from parsed ``key=value`` words (before any data is loaded).

    ``import_plugins`` (a function of a list of plugin names) is called with the config's
    ``plugins`` once the config is composed, before the registered names in it are checked.
    """
    start = Path(words["config"]) if "config" in words else CONFIG_ROOT / "default.py"
    cfg = load_file(start)
    if "dataset" in words:
        cfg["dataset"], rest = dataset_preset(words["dataset"])
        cfg = _merge(cfg, rest)
    for key in ("methods", "bits", "seeds", "device", "out", "plugins", "force", "launcher", "blas_threads",
                "workers", "claim_timeout"):
        if key in words:
            cfg[key] = words[key]
    dotted = {k: v for k, v in words.items() if "." in k and not k.startswith("method.")}
    if "epochs" in words:
        dotted["train.epochs"] = words["epochs"]
    if "data_root" in words:
        dotted["dataset.data_root"] = words["data_root"]
    for key in dotted:
        section = key.split(".", 1)[0]
        if section in cfg and not isinstance(cfg[section], dict):
            raise HashbenchError(f"cannot set {key!r}: {section!r} is not a section")
    for key, value in dotted.items():  # SECTION.type=other: the base's keys were the old type's
        section, _, leaf = key.partition(".")
        if leaf == "type" and isinstance(cfg.get(section), dict) and cfg[section].get("type") != value:
            cfg[section] = {}
    merged = Config(cfg)
    merged.merge_from_dict(dotted)
    cfg = merged.to_dict()
    if import_plugins is not None:
        plugins = cfg.get("plugins", [])
        import_plugins(check("plugins", plugins, RUN.fields["plugins"].constraints))
    dataset_name = words.get("dataset") or (cfg.get("dataset") or {}).get("type")
    checked = _check_run(cfg, words.get("dataset"))
    overrides = {k.split(".", 1)[1]: v for k, v in words.items() if k.startswith("method.")}
    run = RunConfig(checked, str(dataset_name), overrides)
    run.methods = run.method_configs()  # every method block checked now, before any data is loaded
    for name, mcfg in run.methods.items():
        train = TRAIN.check(mcfg.get("train"))
        require_log(train["log"])  # a missing library stops the run here
        if train["select"] is not None:
            from hashbench.metrics import parse_metric

            try:
                parse_metric(train["select"])
            except HashbenchError as e:
                raise HashbenchError(f"train.select: {e}") from None
        for bits in run.cfg["bits"]:  # parameters that contradict each other, too (cheap: no data yet)
            try:
                build(METHODS, mcfg["method"], n_bits=bits, random_state=run.cfg["seeds"][0])
            except HashbenchError as e:
                raise HashbenchError(f"method {name!r} at {bits} bits: {e}") from None
    return run
