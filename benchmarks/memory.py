"""Peak memory and wall time of every classic method on a ``features`` dataset of NUS-WIDE-21 size.

Issue targets, for each of lsh, pcah, itq, itq_cca, sh, ksh at 64 bits on a ``features`` dataset
of NUS-WIDE-21 size (train 10,500 / query 2,100 / database 193,000, 2,048-D float32 ``.npy``
files: 1.6 GB of database features):

- peak RSS <= 2x the database features' bytes;
- loading <= 2x a plain ``np.load`` of the same files.

The dataset is written to a temporary folder (features: labels times random centres plus noise,
through a ReLU, as CNN features are; labels: multi-hot over 21 classes). Each method then runs in
a fresh subprocess, so its peak RSS (``VmHWM``) is its own, along the runner's path, stage by
stage as :meth:`hashbench.runner.Runner.run_one` does it:

1. *load*: build the run config, ``Runner._load_data`` (dataset and splits) and ``Runner.features``;
2. *fit*: ``method.fit(train features, train labels)``;
3. *encode*: ``method.encode`` on query and database;
4. *score*: :func:`hashbench.stored.score` with the run's evaluation settings.

In the same run, two references, each in its own subprocess too: the interpreter with numpy,
torch and hashbench imported (the fixed baseline in every child), and a plain ``np.load`` of the
six ``.npy`` files (the load target's unit). Files are written first, so every child reads them
from the page cache alike.

    python benchmarks/memory.py                  # NUS-WIDE-21 size: ~4 GB under the temporary folder
    python benchmarks/memory.py --small          # ~30 s on a 2-core machine
    python benchmarks/memory.py --methods itq,ksh --database 50000
"""
from __future__ import annotations

import argparse
import importlib
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

METHODS = ("lsh", "pcah", "itq", "itq_cca", "sh", "ksh")
FULL = dict(train=10_500, query=2_100, database=193_000, dim=2_048, classes=21)
SMALL = dict(train=2_000, query=200, database=10_000, dim=128, classes=21)
SPLITS = ("train", "query", "database")


def peak_rss_bytes() -> int:
    """This process's peak resident set (VmHWM), file-backed pages of memory maps included."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # kB on Linux


def write_dataset(root: Path, sizes: dict, seed: int = 0) -> None:
    """``<split>_features.npy`` (float32) and ``<split>_labels.npy`` (multi-hot uint8), in row chunks."""
    import numpy as np

    rng = np.random.default_rng(seed)
    dim, classes = sizes["dim"], sizes["classes"]
    centres = rng.standard_normal((classes, dim), dtype=np.float32)
    for split in SPLITS:
        n = sizes[split]
        labels = (rng.random((n, classes)) < 0.12).astype(np.uint8)
        labels[np.arange(n), rng.integers(0, classes, n)] = 1
        np.save(root / f"{split}_labels.npy", labels)
        out = np.lib.format.open_memmap(root / f"{split}_features.npy", mode="w+", dtype=np.float32, shape=(n, dim))
        for start in range(0, n, 8192):
            y = labels[start:start + 8192].astype(np.float32)
            x = y @ centres + rng.standard_normal((len(y), dim), dtype=np.float32) * 2.0
            np.maximum(x, 0.0, out=x)
            out[start:start + 8192] = x
        out.flush()
        del out


# ------------------------------------------------------------------------------------- children
def child_baseline() -> dict:
    for module in ("numpy", "torch", "hashbench.runner"):
        importlib.import_module(module)
    return dict(peak=peak_rss_bytes())


def child_np_load(root: Path) -> dict:
    import numpy as np

    importlib.import_module("hashbench.runner")  # the same interpreter baseline as the method children

    t0 = time.perf_counter()
    arrays = [np.load(root / f"{s}_{kind}.npy") for s in SPLITS for kind in ("features", "labels")]
    load_s = time.perf_counter() - t0
    assert sum(a.nbytes for a in arrays) > 0
    return dict(load=load_s, peak=peak_rss_bytes())


def child_method(root: Path, name: str, bits: int, blas_threads: int) -> dict:
    import numpy as np
    from contextlib import nullcontext
    from threadpoolctl import threadpool_limits

    from hashbench.config import RUN_WORDS, build_run_config, parse_words
    from hashbench.device import seed_everything
    from hashbench.registry import METHODS as REGISTRY, build
    from hashbench.results import config_hash
    from hashbench.runner import Runner
    from hashbench.stored import score

    times, rss = {}, {}
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as out:
        words = parse_words(["dataset=features", f"data_root={root}", f"methods={name}", f"bits={bits}", "seeds=0",
                             f"out={out}", "device=cpu"], RUN_WORDS)
        runner = Runner(build_run_config(words))
        mcfg = runner.run_config.methods[name]
        runner._load_data()
        feats = runner.features(mcfg, 0)
        times["load"], rss["load"] = time.perf_counter() - t0, peak_rss_bytes()
        labels = {s: np.asarray(v.labels) for s, v in runner.splits.items()}
        seed_everything(0)
        method = build(REGISTRY, mcfg["method"], n_bits=bits, random_state=0)
        limit = threadpool_limits(limits=blas_threads, user_api="blas") if blas_threads else nullcontext()
        with limit:
            t = time.perf_counter()
            method.fit(feats["train"], labels["train"])
            times["fit"], rss["fit"] = time.perf_counter() - t, peak_rss_bytes()
            t = time.perf_counter()
            q, d = method.encode(feats["query"]), method.encode(feats["database"])
            times["encode"], rss["encode"] = time.perf_counter() - t, peak_rss_bytes()
        ev = mcfg["eval"]
        t = time.perf_counter()
        scores, _, _, _ = score(q, d, labels["query"], labels["database"], ev, ev["metrics"], store=runner.store,
                                run=(config_hash(mcfg), bits, 0))
        times["score"], rss["score"] = time.perf_counter() - t, peak_rss_bytes()
        runner.world.close()
    return dict(times=times, rss=rss, peak=peak_rss_bytes(), scores=scores)


def run_child(args: list[str], script: str = __file__) -> dict:
    """``python SCRIPT --child ARGS`` in a fresh process (its peak RSS its own): the JSON it prints last."""
    proc = subprocess.run([sys.executable, script, "--child", *args], capture_output=True, text=True)
    if proc.returncode:
        raise SystemExit(f"{Path(script).stem}: child {' '.join(args)} failed:\n{proc.stderr[-4000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


# ------------------------------------------------------------------------------------- parent
def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    for key, value in FULL.items():
        p.add_argument(f"--{key}", type=int, default=None, help=f"default {value:,} (--small: {SMALL[key]:,})")
    p.add_argument("--small", action="store_true", help="a size that fits a 2-core CI machine in ~30 s")
    p.add_argument("--bits", type=int, default=64)
    p.add_argument("--methods", default=",".join(METHODS))
    p.add_argument("--blas-threads", type=int, default=1,
                   help="as the run word blas_threads (default 1: on a small busy machine threaded BLAS spins; "
                        "0 = BLAS's own)")
    p.add_argument("--dir", default=None, help="where to write the dataset (default: a temporary folder)")
    p.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = p.parse_args(argv)

    if args.child:
        kind, *rest = args.child
        if kind == "baseline":
            result = child_baseline()
        elif kind == "np.load":
            result = child_np_load(Path(rest[0]))
        else:
            result = child_method(Path(rest[0]), kind, int(rest[1]), int(rest[2]))
        print(json.dumps(result))
        return

    sizes = {k: getattr(args, k) if getattr(args, k) is not None else (SMALL if args.small else FULL)[k]
             for k in FULL}
    methods = [m for m in args.methods.split(",") if m]
    db_bytes = sizes["database"] * sizes["dim"] * 4
    total_bytes = sum(sizes[s] for s in SPLITS) * sizes["dim"] * 4
    parent = Path(args.dir) if args.dir else Path(tempfile.gettempdir())
    free = shutil.disk_usage(parent).free
    if free < 1.2 * total_bytes:
        raise SystemExit(f"memory: {total_bytes / 2**30:.1f} GiB of features do not fit in {parent} "
                         f"({free / 2**30:.1f} GiB free); use --dir or --small")
    cpu = f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs"
    print(f"memory: features dataset train {sizes['train']:,} / query {sizes['query']:,} / database "
          f"{sizes['database']:,} x {sizes['dim']:,} float32 ({db_bytes / 1e9:.2f} GB database features, "
          f"{total_bytes / 1e9:.2f} GB in all), {sizes['classes']} classes, {args.bits} bits; {cpu}; "
          f"BLAS threads {args.blas_threads or 'default'}")
    root = Path(tempfile.mkdtemp(prefix="hashbench-memory-", dir=parent))
    try:
        t0 = time.perf_counter()
        write_dataset(root, sizes)
        print(f"  wrote the files in {time.perf_counter() - t0:.1f} s to {root}")
        base = run_child(["baseline"])
        ref = run_child(["np.load", str(root)])
        print(f"  interpreter baseline (numpy + torch + hashbench imported): peak RSS {base['peak'] / 1e6:,.0f} MB "
              f"= {base['peak'] / db_bytes:.2f}x database bytes")
        print(f"  reference, plain np.load of the 6 files: {ref['load']:.2f} s, peak RSS "
              f"{ref['peak'] / db_bytes:.2f}x database bytes (the load unit below)")
        print()
        print(f"  {'method':<8} {'peak RSS':>9} {'/db bytes':>9} {'-baseline':>9}   {'load':>6} {'/np.load':>8} "
              f"{'fit':>7} {'encode':>7} {'score':>6}   mAP")
        worst_rss = worst_load = 0.0
        stages = []
        for name in methods:
            r = run_child([name, str(root), str(args.bits), str(args.blas_threads)])
            t, ratio = r["times"], r["peak"] / db_bytes
            load_ratio = t["load"] / ref["load"]
            worst_rss, worst_load = max(worst_rss, ratio), max(worst_load, load_ratio)
            m = next((v for k, v in r["scores"].items() if k.lower().startswith("map")), float("nan"))
            print(f"  {name:<8} {r['peak'] / 1e6:>7,.0f}MB {ratio:>8.2f}x {(r['peak'] - base['peak']) / db_bytes:>8.2f}x"
                  f"   {t['load']:>5.2f}s {load_ratio:>7.2f}x {t['fit']:>6.2f}s {t['encode']:>6.2f}s "
                  f"{t['score']:>5.2f}s   {m:.4f}")
            stages.append(f"{name} " + " ".join(f"{k} {v / db_bytes:.2f}x" for k, v in r["rss"].items()))
        print("\n  peak RSS / database bytes reached by the end of each stage:")
        for line in stages:
            print(f"    {line}")
        print()
        print(f"  worst peak RSS / database bytes: {worst_rss:.2f}x (target <= 2x: "
              f"{'met' if worst_rss <= 2 else 'MISSED'}); worst load / np.load: {worst_load:.2f}x "
              f"(target <= 2x: {'met' if worst_load <= 2 else 'MISSED'})")
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
