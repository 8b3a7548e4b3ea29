"""The benchmark loop: for each method × code length × seed, train or fit, encode, rank, score.

A sweep survives interruptions (see :mod:`hashbench.results` for the files):

- every finished run is appended to ``out/results.jsonl`` at once, as one atomic line carrying the
  hash of its resolved config, so an interruption loses only the run in progress;
- running the same sweep again skips what is done (and says so); ``force=true`` recomputes;
- a run's codes are saved (packed, with a manifest) before it is scored, so a new evaluation
  (other metrics, other tie policy) re-scores them instead of retraining: ``hashbench eval``;
- a deep run trains with ``checkpoint=out/checkpoints/<hash>-<bits>-<seed>.pt``, and so resumes
  from its last epoch; the checkpoint is deleted once recorded.

The tables are written at the end as ``out/tables-<run id>.md`` and ``.tex``, and printed; they
are exactly what ``hashbench table`` prints for the same records.
"""
from __future__ import annotations

import json
import platform
import subprocess
import sys
import time
import uuid
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from threadpoolctl import threadpool_limits

import hashbench
from hashbench.config import method_configs
from hashbench.distributed import init_distributed
from hashbench.feature_cache import cached_features, weights_fingerprint
from hashbench.errors import HashbenchError
from hashbench.method import ClassicHasher, DeepMethod
from hashbench.metrics import conventions, evaluate, parse_metric
from hashbench.model import DeepHasher
from hashbench.registry import BACKBONES, DATASETS, METHODS, build
from hashbench.results import (CONVENTION_KEYS, ResultStore, config_hash, conventions_of, eval_settings, latest,
                               method_kind, run_key, stem)
from hashbench.tables import render
from hashbench.device import seed_everything
from hashbench.encode import encode_deep
from hashbench.progress import Progress, SweepProgress
from hashbench.train import train_deep


def versions() -> dict[str, str]:
    import mmengine
    import timm

    return dict(hashbench=hashbench.__version__, python=platform.python_version(), torch=torch.__version__,
                timm=timm.__version__, mmengine=mmengine.__version__, numpy=np.__version__)


def git_commit() -> str | None:
    try:
        root = Path(hashbench.__file__).resolve().parent.parent
        out = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True,
                             timeout=5)
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def _labels(split) -> np.ndarray:
    return np.asarray(split.labels)


def _inputs(split) -> np.ndarray:
    """All inputs of a split as one array (in-memory splits directly, others item by item)."""
    if hasattr(split, "inputs"):
        return np.asarray(split.inputs)
    return np.stack([np.asarray(split[i][0]) for i in range(len(split))])


def new_run_id() -> str:
    return time.strftime("%Y%m%d-%H%M%S") + f"-{uuid.uuid4().hex[:6]}"  # unique: tables are never overwritten


@dataclass
class Job:
    """One (method, bits, seed) of a sweep with its resolved config and the hash of it."""

    name: str
    mcfg: dict
    bits: int
    seed: int
    chash: str
    dataset: str

    @property
    def label(self) -> str:
        return f"{self.name} {self.bits} bits seed {self.seed}"

    @property
    def key(self) -> tuple:
        return (self.name, self.dataset, self.bits, self.seed, self.chash)

    @property
    def conventions(self) -> tuple:
        return tuple(str(self.mcfg["eval"][k]) for k in CONVENTION_KEYS)

    @property
    def deep(self) -> bool:
        return not method_kind(self.mcfg["method"])[0]


def _shown(record: dict, metrics: list[str]) -> str:
    return ", ".join(f"{k} {v:.4f}" for k, v in record["metrics"].items() if k in metrics)


def _score(q, d, ql, dl, ev: dict, metrics: list[str], label: str = ""):
    t1 = time.perf_counter()
    lines = Progress(f"{label} scoring".strip())  # silent unless the evaluation takes a while
    scores, info = evaluate(q, d, ql, dl, metrics=metrics, ties=ev["ties"], ap_denominator=ev["ap_denominator"],
                            no_relevant=ev["no_relevant"], details=True,
                            progress=lambda done, total: lines.step(done, total, "queries"))
    eval_info = {k: v for k, v in info.items() if isinstance(v, (int, float, str))}
    return {k: float(v) for k, v in scores.items()}, eval_info, time.perf_counter() - t1


def _rescored(base: dict, ev: dict, metrics: list[str], scores: dict, info: dict, eval_s: float, run_id: str) -> dict:
    """A new record for saved codes scored again: ``base`` (a record or a codes manifest) with new
    metrics and evaluation settings."""
    keep = ("method", "dataset", "bits", "seed", "config_hash", "codes", "train_seconds", "device", "train_log",
            "config", "versions", "git_commit")
    rec = {k: base[k] for k in keep if k in base}
    settings = eval_settings({**ev, "metrics": metrics})
    rec["config"] = {**rec.get("config", {}), "eval": {**rec.get("config", {}).get("eval", {}), **ev}}
    rec.update(metrics=scores, eval=settings, eval_seconds=eval_s, eval_info=info, versions=versions(),
               git_commit=git_commit(), run_id=run_id, time=time.strftime("%Y-%m-%dT%H:%M:%S"),
               reevaluated_from=base.get("reevaluated_from") or base.get("run_id"))
    return rec


class Runner:
    """Runs a resolved config (see :func:`hashbench.config.build_run_config`)."""

    def __init__(self, cfg: dict, stream=None):
        self.cfg, self.stream = cfg, stream
        # Under torchrun (launcher=pytorch) every process runs this loop: all train the deep
        # methods together (DDP); only the main process encodes, scores, writes and prints.
        self.world = init_distributed(str(cfg.get("launcher", "none")), device=str(cfg.get("device", "auto")))
        self.device = self.world.device
        self.out = Path(cfg.get("out", "out"))
        self.store = ResultStore(self.out)
        self.run_id = new_run_id()
        self._features: dict = {}
        self.dataset = None

    def say(self, text: str) -> None:
        if self.world.is_main:
            print(text, file=self.stream or sys.stdout, flush=True)

    def _load_data(self) -> None:
        if self.dataset is None:
            self.dataset = build(DATASETS, self.cfg["dataset"])
            self.splits = {s: self.dataset.get(s) for s in ("train", "query", "database")}

    def plan(self) -> list[Job]:
        """Every (method, bits, seed) of the sweep, in the order they run."""
        cfg = self.cfg
        method_cfgs = method_configs(cfg)  # fails early on bad names and parameters
        for mcfg in method_cfgs.values():
            for m in mcfg["eval"]["metrics"]:
                parse_metric(m)
            conventions(**{k: mcfg["eval"][k] for k in CONVENTION_KEYS})
        return [Job(name, mcfg, bits, seed, config_hash(mcfg), cfg["dataset_name"])
                for name, mcfg in method_cfgs.items() for bits in dict.fromkeys(cfg["bits"])
                for seed in dict.fromkeys(cfg["seeds"])]

    def run(self) -> list[dict]:
        jobs = self.plan()
        # The main process owns out=: it alone writes, and a second sweep into the folder stops.
        with self.store.lock() if self.world.is_main else nullcontext():
            return self._run(jobs)

    def _run(self, jobs: list[Job]) -> list[dict]:
        cfg = self.cfg
        done = {} if cfg.get("force") else self.store.done()
        todo = {}
        for job in jobs:
            prev = done.get(job.key + job.conventions)
            if prev is not None and set(job.mcfg["eval"]["metrics"]) <= set(prev["metrics"]):
                todo[job.key] = "skip"
            elif not cfg.get("force") and self.store.has_codes(job.chash, job.bits, job.seed):
                todo[job.key] = "rescore"
            else:
                todo[job.key] = "train"
        counts = {s: sum(v == s for v in todo.values()) for s in ("skip", "rescore", "train")}
        self.out.mkdir(parents=True, exist_ok=True)
        results_path = self.store.path
        what = f"methods {', '.join(cfg['methods'])}, bits {cfg['bits']}, seeds {cfg['seeds']}"
        if counts["train"]:
            self._load_data()
            self.say(f"hashbench run {self.run_id}: dataset {cfg['dataset_name']} "
                     f"({', '.join(f'{k} {len(v)}' for k, v in self.splits.items())}), device {self.device}, {what}")
        else:
            self.say(f"hashbench run {self.run_id}: dataset {cfg['dataset_name']}, {what}")
        if counts["skip"] or counts["rescore"]:
            parts = [f"{counts['skip']} of {len(jobs)} runs already done in {results_path}: skipped "
                     "(force=true recomputes)"]
            if counts["rescore"]:
                parts.append(f"{counts['rescore']} to re-score from saved codes (no training)")
            parts.append(f"{counts['train']} to train")
            self.say("; ".join(parts))
        self.world.barrier()  # every process planned from the same results.jsonl before any is written
        progress = SweepProgress(len(jobs), [(j.name, todo[j.key]) for j in jobs if todo[j.key] != "skip"],
                                 self.stream)
        records = []
        for i, job in enumerate(jobs, 1):
            tables = job.mcfg["eval"]["tables"]
            if todo[job.key] == "skip":
                prev = done[job.key + job.conventions]
                records.append(prev)
                self.say(f"  {job.label}: done (run {prev.get('run_id')}), skipped: {_shown(prev, tables)}")
                continue
            t = time.perf_counter()
            if not self.world.is_main and not (todo[job.key] == "train" and job.deep):
                self.world.barrier()  # classic fits and re-scoring are the main process's alone
                continue
            if todo[job.key] == "rescore":
                progress.start(i, job.label, "re-scoring saved codes")
                record = self.rescore(job)
            else:
                if self.world.is_main:
                    progress.start(i, job.label, "training" if job.deep else "fitting")
                record = self.run_one(job.name, job.mcfg, job.bits, job.seed)
            self.world.barrier()
            if not self.world.is_main:
                continue
            self.store.append(record)  # one atomic line: earlier results are never overwritten
            self.store.checkpoint_path(job.chash, job.bits, job.seed).unlink(missing_ok=True)
            progress.finish((job.name, todo[job.key]), time.perf_counter() - t)
            records.append(record)
            if todo[job.key] == "rescore":
                self.say(f"  {job.label}: {_shown(record, tables)} (re-scored saved codes of run "
                         f"{record['reevaluated_from']}, eval {record['eval_seconds']:.2f}s)")
            else:
                self.say(f"  {job.label}: {_shown(record, tables)} "
                         f"(train {record['train_seconds']:.1f}s, eval {record['eval_seconds']:.2f}s)")
        if not self.world.is_main:
            return records
        merged = self.store.done()
        shown = [merged[j.key + j.conventions] for j in jobs]
        text = self.tables(shown)
        (self.out / f"tables-{self.run_id}.md").write_text(text)
        (self.out / f"tables-{self.run_id}.tex").write_text(self.tables(shown, fmt="latex"))
        self.say("\n" + text)
        self.say(f"results appended to {results_path}; tables in {self.out / f'tables-{self.run_id}.md'} (.tex)")
        return records

    def tables(self, records: list[dict], fmt: str = "markdown") -> str:
        return render(records, self.cfg["eval"]["tables"], fmt=fmt)

    # ------------------------------------------------------------------------------------------
    def run_one(self, name: str, mcfg: dict, bits: int, seed: int) -> dict:
        """Train or fit, encode, save the codes, score: the record of one run (not yet appended)."""
        self._load_data()
        chash = config_hash(mcfg)
        seed_everything(seed)
        method = build(METHODS, mcfg["method"], n_bits=bits, random_state=seed)
        label = f"{name} {bits} bits seed {seed}"
        t0 = time.perf_counter()
        log = []
        if isinstance(method, DeepMethod):
            if self.dataset.kind != "images":
                raise HashbenchError(f"{name} is a deep method and trains a backbone on images, but dataset "
                                     f"{self.cfg['dataset_name']!r} holds precomputed features; use a classic "
                                     "method on it (hashbench list methods)")
            backbone = build(BACKBONES, mcfg["backbone"])
            model = DeepHasher(backbone, bits, bypass=method.bypass)
            checkpoint = self.store.checkpoint_path(chash, bits, seed)  # resumes an interrupted run
            checkpoint.parent.mkdir(parents=True, exist_ok=True)
            log = train_deep(method, model, self.splits["train"], mcfg["train"], self.device, seed, label,
                             checkpoint=str(checkpoint), world=self.world)
            train_s = time.perf_counter() - t0
            if not self.world.is_main:
                return None
            batch = int(mcfg["train"].get("encode_batch_size", 256))
            precision = mcfg["train"].get("precision", "fp32")
            network = lambda split: encode_deep(model, split, self.device, batch, precision)  # noqa: E731
            q, d = (method.encode(s, self.splits[s], network) for s in ("query", "database"))
        elif isinstance(method, ClassicHasher):
            feats = self.features(mcfg, seed) if method.needs_features else \
                {s: np.zeros((len(v), 1), np.float32) for s, v in self.splits.items()}
            # not part of the config hash: threads change speed, not the method
            threads = self.cfg.get("blas_threads")
            with threadpool_limits(limits=threads, user_api="blas") if threads else nullcontext():
                method.fit(feats["train"], _labels(self.splits["train"]))
                train_s = time.perf_counter() - t0
                q, d = method.encode(feats["query"]), method.encode(feats["database"])
        else:
            raise HashbenchError(f"method {name!r} builds a {type(method).__name__}, which is neither a "
                                 "DeepMethod nor a ClassicHasher")
        ql, dl = _labels(self.splits["query"]), _labels(self.splits["database"])
        resolved = {k: mcfg[k] for k in ("method", "backbone", "train", "dataset", "classic", "eval") if k in mcfg}
        base = dict(method=name, dataset=self.cfg["dataset_name"], bits=bits, seed=seed, config_hash=chash,
                    codes=f"codes/{stem(chash, bits, seed)}.npz", train_seconds=train_s, device=str(self.device),
                    train_log=log, config=resolved, versions=versions(), git_commit=git_commit(),
                    run_id=self.run_id, time=time.strftime("%Y-%m-%dT%H:%M:%S"))
        self.store.save_codes(base, q, d, ql, dl)  # before scoring: an interrupted evaluation costs no training
        ev = mcfg["eval"]
        scores, info, eval_s = _score(q, d, ql, dl, ev, ev["metrics"], label)
        return dict(base, metrics=scores, eval=eval_settings(ev), eval_seconds=eval_s, eval_info=info)

    def rescore(self, job: Job) -> dict:
        """The record of a run whose codes are saved, scored under the job's evaluation settings."""
        codes = self.store.load_codes(job.chash, job.bits, job.seed)
        manifest = self.store.load_manifest(job.chash, job.bits, job.seed)
        ev = job.mcfg["eval"]
        scores, info, eval_s = _score(codes["query"], codes["database"], codes["query_labels"],
                                      codes["database_labels"], ev, ev["metrics"], job.label)
        base = {**manifest, "method": job.name, "dataset": job.dataset}
        return _rescored(base, {k: ev[k] for k in CONVENTION_KEYS}, list(ev["metrics"]), scores, info, eval_s,
                         self.run_id)

    def features(self, mcfg: dict, seed: int) -> dict[str, np.ndarray]:
        """Features for classic methods: the dataset's own, or the frozen backbone's (once per run)."""
        source = mcfg.get("classic", {}).get("features", "backbone")
        if self.dataset.kind == "features" or source == "pixels":
            scale = 1.0 if self.dataset.kind == "features" else 1 / 255
            return {s: _inputs(v).reshape(len(v), -1).astype(np.float32) * scale for s, v in self.splits.items()}
        if source != "backbone":
            raise HashbenchError(f"unknown classic.features {source!r}; valid: backbone, pixels")
        key = (json.dumps(mcfg["backbone"], sort_keys=True), seed)
        if key not in self._features:
            # On disk under a content key (backbone, its actual weights, transform, data): every
            # method × bits of this and later sweeps reuses one extraction.
            seed_everything(seed)  # an untrained backbone's features depend on its initialisation
            backbone = build(BACKBONES, {**mcfg["backbone"], "frozen": True})
            data = json.dumps(dict(dataset=self.cfg["dataset_name"], params=mcfg["dataset"]), sort_keys=True,
                              default=str)
            weights = weights_fingerprint(backbone)
            self._features[key] = {s: cached_features(mcfg["backbone"], v, split_key=f"{data}/{s}",
                                                      device=self.device, backbone=backbone, weights=weights)
                                   for s, v in self.splits.items()}
        return self._features[key]


# ---------------------------------------------------------------------------------- stored results
def select(records: list[dict], words: dict) -> list[dict]:
    """Records passing the filters ``methods``, ``dataset``, ``bits``, ``seeds`` of ``words``;
    a filter value that matches nothing stored is refused, naming what is stored."""
    from hashbench.errors import suggest

    fields = dict(methods="method", dataset="dataset", bits="bits", seeds="seed")
    for word, field in fields.items():
        if word not in words:
            continue
        wanted = words[word] if isinstance(words[word], list) else [words[word]]
        stored = list(dict.fromkeys(r[field] for r in records))
        for w in wanted:
            if w not in stored:
                names = ([str(s) for s in sorted(stored)] if field in ("bits", "seed")
                         else suggest(str(w), [str(s) for s in stored]))
                raise HashbenchError(f"no stored result has {field} {w!r}; stored: {', '.join(names)}")
        records = [r for r in records if r[field] in wanted]
    return records


def load_results(out: str | Path) -> tuple[ResultStore, list[dict]]:
    """The store of ``out`` and its records; an error naming the folder when there are none."""
    store = ResultStore(out)
    records = store.records()
    if not records:
        raise HashbenchError(f"no results in {store.path}; run e.g. `hashbench run out={out}` first")
    return store, records


def table(words: dict) -> str:
    """``hashbench table``: the report of every stored run (latest per run and conventions)."""
    _, records = load_results(words.get("out", "out"))
    merged = select(latest(records), words)
    if "metrics" in words:
        from hashbench.tables import check_metrics

        check_metrics(merged, words["metrics"])
    return render(merged, words.get("metrics"), fmt=words.get("format", "markdown"))


def evaluate_stored(words: dict, stream=None) -> list[dict]:
    """``hashbench eval``: score saved codes again (other metrics or conventions) without training.

    For every selected run (latest record per run key) with saved codes, computes the requested
    metrics (default: the run's own ``eval.metrics``) under its conventions overridden by
    ``eval.*`` words, appends one record per run that needed anything new (``force=true``:
    recompute all), and prints the tables of the selected runs under these settings.
    """
    store, _ = load_results(words.get("out", "out"))  # a folder without results fails first
    with store.lock():
        return _evaluate_stored(words, stream)


def _evaluate_stored(words: dict, stream=None) -> list[dict]:
    store, records = load_results(words.get("out", "out"))
    say = lambda text: print(text, file=stream or sys.stdout, flush=True)  # noqa: E731
    overrides = {k.split(".", 1)[1]: v for k, v in words.items() if k.startswith("eval.")}
    unknown = set(overrides) - set(CONVENTION_KEYS) - {"metrics", "tables"}
    if unknown:
        from hashbench.errors import suggest

        key = sorted(unknown)[0]
        raise HashbenchError(f"unknown key 'eval.{key}'; valid: "
                             f"{', '.join('eval.' + k for k in suggest(key, [*CONVENTION_KEYS, 'metrics', 'tables']))}")
    if "metrics" in words:
        overrides["metrics"] = words["metrics"]
    for m in overrides.get("metrics", []):
        parse_metric(m)
    conventions(**{k: overrides[k] for k in CONVENTION_KEYS if k in overrides})  # one-line errors for bad values
    # one base record per run key: the latest, whatever its conventions
    bases: dict[tuple, dict] = {}
    for r in select(latest(records), words):
        bases[run_key(r)] = r
    merged = {run_key(r) + conventions_of(r): r for r in latest(records)}
    run_id = new_run_id()
    plan, no_codes = [], []
    for key, base in bases.items():
        ev = {**dict(zip(CONVENTION_KEYS, conventions_of(base))),
              **{k: overrides[k] for k in CONVENTION_KEYS if k in overrides}}
        metrics = list(overrides.get("metrics") or base.get("eval", {}).get("metrics")
                       or base.get("config", {}).get("eval", {}).get("metrics") or base["metrics"])
        have = merged.get(key + tuple(str(ev[k]) for k in CONVENTION_KEYS), {}).get("metrics", {})
        missing = metrics if words.get("force") else [m for m in metrics if m not in have]
        chash = base.get("config_hash")
        if missing and not (chash and store.has_codes(chash, base["bits"], base["seed"])):
            no_codes.append(base)
            continue
        plan.append((key, base, ev, metrics, missing))
    progress = SweepProgress(len(plan), [(b["method"], "rescore") for _, b, _, _, m in plan if m], stream)
    evaluated, shown_keys = [], []
    for i, (key, base, ev, metrics, missing) in enumerate(plan, 1):
        shown_keys.append(key + tuple(str(ev[k]) for k in CONVENTION_KEYS))
        if not missing:
            continue
        label = f"{base['method']} {base['bits']} bits seed {base['seed']}"
        progress.start(i, label, "scoring saved codes")
        t = time.perf_counter()
        codes = store.load_codes(base["config_hash"], base["bits"], base["seed"])
        scores, info, eval_s = _score(codes["query"], codes["database"], codes["query_labels"],
                                      codes["database_labels"], ev, missing, label)
        rec = _rescored(base, ev, missing, scores, info, eval_s, run_id)
        store.append(rec)
        progress.finish((base["method"], "rescore"), time.perf_counter() - t)
        evaluated.append(rec)
        say(f"  {label} ({base['dataset']}): {_shown(rec, missing)} (eval {eval_s:.2f}s)")
    ties = sorted({str(e["ties"]) for _, _, e, _, _ in plan})
    say(f"hashbench eval {run_id}: scored {len(evaluated)} of {len(bases)} stored runs from {store.codes_dir} "
        f"without retraining (ties {', '.join(ties) or '-'}); {len(plan) - len(evaluated)} already had "
        f"every metric asked for{' (force=true recomputes)' if not words.get('force') else ''}"
        + (f"; {len(no_codes)} have no saved codes (older runs?) and were left out: "
           + ", ".join(f"{b['method']} {b['bits']} bits seed {b['seed']}" for b in no_codes[:5])
           + (" …" if len(no_codes) > 5 else "") if no_codes else ""))
    if shown_keys:
        merged = {run_key(r) + conventions_of(r): r for r in latest(store.records())}
        recs = [merged[k] for k in shown_keys]
        metrics = overrides.get("tables") or overrides.get("metrics")
        say("\n" + render(recs, metrics))
    return evaluated


__all__ = ["Runner", "SweepProgress", "evaluate_stored", "load_results", "select", "table"]
