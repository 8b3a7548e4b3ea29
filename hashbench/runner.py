"""The benchmark loop: for each method × code length × seed, train or fit, encode, rank, score.

Every finished run is appended to ``out/results.jsonl`` at once (one JSON object per line), so
an interruption loses only the run in progress; the tables are written at the end as
``out/tables-<run id>.md`` and ``.tex``, and printed.
"""
from __future__ import annotations

import json
import platform
import subprocess
import sys
import time
import uuid
from pathlib import Path

import numpy as np
import torch

import hashbench
from hashbench.config import method_configs
from hashbench.errors import HashbenchError
from hashbench.method import ClassicHasher, DeepMethod
from hashbench.metrics import conventions, evaluate
from hashbench.model import DeepHasher
from hashbench.registry import BACKBONES, DATASETS, METHODS, build
from hashbench.tables import report
from hashbench.train import encode_deep, extract_features, resolve_device, seed_everything, train_deep


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


class Runner:
    """Runs a resolved config (see :func:`hashbench.config.build_run_config`)."""

    def __init__(self, cfg: dict, stream=None):
        self.cfg, self.stream = cfg, stream
        self.device = resolve_device(str(cfg.get("device", "auto")))
        self.out = Path(cfg.get("out", "out"))
        self.run_id = time.strftime("%Y%m%d-%H%M%S") + f"-{uuid.uuid4().hex[:6]}"  # unique: tables are never overwritten
        self._features: dict = {}

    def say(self, text: str) -> None:
        print(text, file=self.stream or sys.stdout, flush=True)

    def run(self) -> list[dict]:
        cfg = self.cfg
        method_cfgs = method_configs(cfg)  # fails early on bad names and parameters
        self.dataset = build(DATASETS, cfg["dataset"])
        self.splits = {s: self.dataset.get(s) for s in ("train", "query", "database")}
        self.out.mkdir(parents=True, exist_ok=True)
        results_path = self.out / "results.jsonl"
        self.say(f"hashbench run {self.run_id}: dataset {cfg['dataset_name']} "
                 f"({', '.join(f'{k} {len(v)}' for k, v in self.splits.items())}), device {self.device}, "
                 f"methods {', '.join(cfg['methods'])}, bits {cfg['bits']}, seeds {cfg['seeds']}")
        records = []
        for name, mcfg in method_cfgs.items():
            for bits in cfg["bits"]:
                for seed in cfg["seeds"]:
                    record = self.run_one(name, mcfg, bits, seed)
                    with open(results_path, "a") as f:  # append: earlier results are never overwritten
                        f.write(json.dumps(record) + "\n")
                    records.append(record)
                    shown = ", ".join(f"{k} {v:.4f}" for k, v in record["metrics"].items()
                                      if k in cfg["eval"]["tables"])
                    self.say(f"  {name} {bits} bits seed {seed}: {shown} "
                             f"(train {record['train_seconds']:.1f}s, eval {record['eval_seconds']:.2f}s)")
        text = self.tables(records)
        (self.out / f"tables-{self.run_id}.md").write_text(text)
        (self.out / f"tables-{self.run_id}.tex").write_text(self.tables(records, fmt="latex"))
        self.say("\n" + text)
        self.say(f"results appended to {results_path}; tables in {self.out / f'tables-{self.run_id}.md'} (.tex)")
        return records

    def tables(self, records: list[dict], fmt: str = "markdown") -> str:
        ev = self.cfg["eval"]
        footer = conventions(ties=ev["ties"], ap_denominator=ev["ap_denominator"], no_relevant=ev["no_relevant"])
        return report(records, ev["tables"], fmt=fmt, footer=footer,
                      title=f"{self.cfg['dataset_name']}: methods × code length")

    # ------------------------------------------------------------------------------------------
    def run_one(self, name: str, mcfg: dict, bits: int, seed: int) -> dict:
        seed_everything(seed)
        method = build(METHODS, mcfg["method"], n_bits=bits, random_state=seed)
        label = f"{name} {bits} bits seed {seed}"
        t0 = time.perf_counter()
        log = []
        if isinstance(method, DeepMethod):
            backbone = build(BACKBONES, mcfg["backbone"])
            model = DeepHasher(backbone, bits, bypass=method.bypass)
            log = train_deep(method, model, self.splits["train"], mcfg["train"], self.device, seed, label)
            train_s = time.perf_counter() - t0
            batch = int(mcfg["train"].get("encode_batch_size", 256))
            precision = mcfg["train"].get("precision", "fp32")
            q, d = (encode_deep(model, self.splits[s], self.device, batch, precision) for s in ("query", "database"))
        elif isinstance(method, ClassicHasher):
            feats = self.features(mcfg, seed) if getattr(method, "needs_features", True) else \
                {s: np.zeros((len(v), 1), np.float32) for s, v in self.splits.items()}
            method.fit(feats["train"], _labels(self.splits["train"]))
            train_s = time.perf_counter() - t0
            q, d = method.encode(feats["query"]), method.encode(feats["database"])
        else:
            raise HashbenchError(f"method {name!r} builds a {type(method).__name__}, which is neither a "
                                 "DeepMethod nor a ClassicHasher")
        ev = mcfg["eval"]
        t1 = time.perf_counter()
        scores, info = evaluate(q, d, _labels(self.splits["query"]), _labels(self.splits["database"]),
                                metrics=ev["metrics"], ties=ev["ties"], ap_denominator=ev["ap_denominator"],
                                no_relevant=ev["no_relevant"], details=True)
        eval_s = time.perf_counter() - t1
        resolved = {k: mcfg[k] for k in ("method", "backbone", "train", "dataset", "eval") if k in mcfg}
        return dict(method=name, dataset=self.cfg["dataset_name"], bits=bits, seed=seed,
                    metrics={k: float(v) for k, v in scores.items()},
                    train_seconds=train_s, eval_seconds=eval_s, device=str(self.device),
                    eval_info={k: v for k, v in info.items() if isinstance(v, (int, float, str))},
                    train_log=log, config=resolved, versions=versions(), git_commit=git_commit(),
                    run_id=self.run_id, time=time.strftime("%Y-%m-%dT%H:%M:%S"))

    def features(self, mcfg: dict, seed: int) -> dict[str, np.ndarray]:
        """Features for classic methods: the dataset's own, or the frozen backbone's (once per run)."""
        source = mcfg.get("classic", {}).get("features", "backbone")
        if getattr(self.dataset, "kind", "images") == "features" or source == "pixels":
            scale = 1.0 if getattr(self.dataset, "kind", "images") == "features" else 1 / 255
            return {s: _inputs(v).reshape(len(v), -1).astype(np.float32) * scale for s, v in self.splits.items()}
        if source != "backbone":
            raise HashbenchError(f"unknown classic.features {source!r}; valid: backbone, pixels")
        key = (json.dumps(mcfg["backbone"], sort_keys=True), seed)
        if key not in self._features:
            seed_everything(seed)  # an untrained backbone's features depend on its initialisation
            backbone = build(BACKBONES, {**mcfg["backbone"], "frozen": True})
            self._features[key] = {s: extract_features(backbone, v, self.device) for s, v in self.splits.items()}
        return self._features[key]
