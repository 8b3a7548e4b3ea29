"""Peak memory of a ``features`` run of every classic method: at most 2x the database features.

A CI-sized stand-in for benchmarks/memory.py (which measures NUS-WIDE-21 size): a 50,000 x 512
float32 database (102 MB). Each run is a fresh ``hashbench run`` subprocess, whose ``VmHWM``
(peak resident set, the memory-mapped file's pages included) is its own. The fixed part — the
interpreter with numpy, torch and hashbench imported, the config, registries, tables — is
measured in the same test by the same run on a tiny copy of the dataset, and subtracted: what is
left is what the data costs. Before features were memory-mapped and encoded in chunks it was ~7x
the database (float32 copies in the dataset and the runner, float64 copies in encode).
Wall time is not asserted (benchmarks/memory.py prints it).
"""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np

CHILD = r"""
import json, sys
from hashbench.cli import main
status = main(["run", "dataset=features", "data_root=" + sys.argv[1], "methods=lsh,pcah,itq,itq_cca,sh,ksh",
               "bits=64", "seeds=0", "out=" + sys.argv[2], "device=cpu", "blas_threads=1"])
peak = next(int(line.split()[1]) * 1024 for line in open("/proc/self/status") if line.startswith("VmHWM:"))
print(json.dumps(dict(status=status, peak=peak)))
"""


def _write(root, sizes, dim=512, classes=21, seed=0):
    root.mkdir()
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((classes, dim), dtype=np.float32)
    for split, n in sizes.items():
        labels = (rng.random((n, classes)) < 0.12).astype(np.uint8)
        labels[np.arange(n), rng.integers(0, classes, n)] = 1
        x = labels.astype(np.float32) @ centres + rng.standard_normal((n, dim), dtype=np.float32)
        np.save(root / f"{split}_features.npy", x)
        np.save(root / f"{split}_labels.npy", labels)


def _peak(root, out) -> int:
    proc = subprocess.run([sys.executable, "-c", CHILD, str(root), str(out)], capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["status"] == 0
    return result["peak"]


def test_features_run_peaks_below_twice_the_database_bytes(tmp_path):
    big = dict(train=3_000, query=500, database=50_000)
    _write(tmp_path / "big", big)
    _write(tmp_path / "tiny", dict(train=400, query=50, database=500), seed=1)
    baseline = _peak(tmp_path / "tiny", tmp_path / "out-tiny")
    peak = _peak(tmp_path / "big", tmp_path / "out-big")
    db_bytes = big["database"] * 512 * 4
    print(f"peak RSS above the tiny run: {(peak - baseline) / db_bytes:.2f}x the database features")  # pytest -s
    assert peak - baseline <= 2 * db_bytes, (
        f"peak RSS {peak / 1e6:.0f} MB = baseline {baseline / 1e6:.0f} MB + "
        f"{(peak - baseline) / db_bytes:.2f}x the {db_bytes / 1e6:.0f} MB of database features (limit 2x)")
