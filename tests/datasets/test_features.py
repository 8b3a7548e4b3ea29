"""Precomputed features: .npz / .npy folder / .mat, multi-hot or class ids, and the errors."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.io import savemat

from hashbench.errors import HashbenchError
from hashbench.registry import DATASETS, build

SIZES = {"train": 30, "query": 6, "database": 40}


def arrays(seed=0, dim=8, classes=5):
    rng = np.random.default_rng(seed)
    return {s: (rng.normal(size=(n, dim)), (rng.random((n, classes)) < 0.3).astype(np.uint8))
            for s, n in SIZES.items()}


def feats(root, **kw):
    return build(DATASETS, dict(type="features", data_root=str(root), **kw))


def test_one_npz_file(tmp_path):
    data = arrays()
    path = tmp_path / "f.npz"
    np.savez(path, **{f"{s}_features": x for s, (x, _) in data.items()},
             **{f"{s}_labels": y for s, (_, y) in data.items()})
    ds = feats(path)
    assert ds.kind == "features" and ds.class_names == ["0", "1", "2", "3", "4"]
    assert ds.splits() == ("train", "query", "database")
    for s, (x, y) in data.items():
        split = ds.get(s)
        assert len(split) == SIZES[s] and np.array_equal(split.labels, y)
        xi, yi = split[1]
        assert xi.dtype == torch.float32 and yi.dtype == torch.float32
        assert np.allclose(xi.numpy(), x[1].astype(np.float32)) and np.array_equal(yi.numpy(), y[1])
    assert ds.inventory()["images"] == 76


def test_folder_of_npy_with_val_carved(tmp_path):
    for s, (x, y) in arrays().items():
        np.save(tmp_path / f"{s}_features.npy", x)
        np.save(tmp_path / f"{s}_labels.npy", y)
    ds = feats(tmp_path, n_val=5, seed=1)
    assert ds.splits() == ("train", "query", "database", "val")
    assert len(ds.get("train")) == 25 and len(ds.get("val")) == 5


def test_mat_per_split_with_one_based_class_ids(tmp_path):
    rng = np.random.default_rng(0)
    ids = {}
    for s, n in SIZES.items():
        ids[s] = rng.integers(1, 4, size=(n, 1)).astype(float)  # MATLAB: doubles, 1-based
        savemat(tmp_path / f"{s}.mat", {"features": rng.normal(size=(n, 4)), "labels": ids[s]})
    ds = feats(tmp_path, class_names=["a", "b", "c"])
    assert ds.class_names == ["a", "b", "c"]
    q = ds.get("query")
    assert np.array_equal(q.labels.argmax(axis=1) + 1, ids["query"].ravel().astype(int))
    assert (q.labels.sum(axis=1) == 1).all()


def test_one_mat_file_with_templated_keys(tmp_path):
    data = arrays(dim=3)
    savemat(tmp_path / "cifar.mat", {**{f"X_{s}": x for s, (x, _) in data.items()},
                                     **{f"Y_{s}": y for s, (_, y) in data.items()}})
    ds = feats(tmp_path / "cifar.mat", feature_key="X_{split}", label_key="Y_{split}")
    assert np.array_equal(ds.get("database").labels, data["database"][1])


def test_errors_name_what_is_wrong(tmp_path):
    data = arrays()
    path = tmp_path / "f.npz"
    np.savez(path, train_features=data["train"][0], train_labels=data["train"][1])
    with pytest.raises(HashbenchError, match="no array 'query_features'; it holds train_features"):
        feats(path)
    np.savez(path, **{f"{s}_features": x for s, (x, _) in data.items()},
             **{f"{s}_labels": y[:3] if s == "query" else y for s, (_, y) in data.items()})
    with pytest.raises(HashbenchError, match="query has 6 feature rows but 3 label rows"):
        feats(path)
    with pytest.raises(HashbenchError, match="not found"):
        feats(tmp_path / "nothing.npz")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(HashbenchError, match="train_features.npy"):
        feats(empty)


# -- one-line refusals through the CLI, and memory: no copies of float32 .npy features -------------
def _write_npy(root, data):
    for s, (x, y) in data.items():
        np.save(root / f"{s}_features.npy", x)
        np.save(root / f"{s}_labels.npy", y)


def _verify_refuses(root, capsys, *needles):
    from hashbench.cli import main

    status = main(["data", "verify", "dataset=features", f"data_root={root}"])
    captured = capsys.readouterr()
    err = captured.err.strip()
    assert status == 2 and len(err.splitlines()) == 1, err
    assert "Traceback" not in captured.err + captured.out
    for needle in needles:
        assert needle in err, err
    return err


def test_string_class_ids_become_sorted_one_hot_classes(tmp_path):
    rng = np.random.default_rng(0)
    words = np.array(["dog", "cat", "emu"])
    data = {s: (rng.normal(size=(n, 4)), words[rng.integers(0, 3, n)]) for s, n in SIZES.items()}
    data["query"] = (data["query"][0], data["query"][1].astype("<U8"))   # another width, same ids
    _write_npy(tmp_path, data)
    ds = feats(tmp_path)
    assert ds.class_names == ["cat", "dog", "emu"]
    q = ds.get("query")
    assert [ds.class_names[i] for i in q.labels.argmax(axis=1)] == list(data["query"][1])
    assert (q.labels.sum(axis=1) == 1).all()


def test_class_ids_mixing_strings_and_numbers_are_refused(tmp_path, capsys):
    data = {s: (x, np.arange(len(x)) % 3) for s, (x, _) in arrays().items()}
    data["query"] = (data["query"][0], np.array(["a", "b"] * 3))
    _write_npy(tmp_path, data)
    _verify_refuses(tmp_path, capsys, "all numbers or all strings", "query strings", "train numbers")


def test_an_empty_split_is_one_line_naming_it(tmp_path, capsys):
    data = arrays()
    data["query"] = (np.zeros((0, 8)), np.zeros((0, 5), np.uint8))
    _write_npy(tmp_path, data)
    _verify_refuses(tmp_path, capsys, "the query split is empty", "at least one row")


def test_random_bytes_named_npz_are_not_a_valid_archive(tmp_path, capsys):
    path = tmp_path / "f.npz"
    path.write_bytes(np.random.default_rng(0).bytes(4096))
    err = _verify_refuses(path, capsys, "is not a valid .npz file", "zip")
    assert "pickled" not in err


def test_random_bytes_named_npy_are_not_a_valid_npy(tmp_path, capsys):
    _write_npy(tmp_path, arrays())
    (tmp_path / "train_features.npy").write_bytes(np.random.default_rng(0).bytes(4096))
    err = _verify_refuses(tmp_path, capsys, "train_features.npy is not a valid .npy file")
    assert "pickled" not in err


def test_float64_beyond_float32_says_overflow_with_split_and_magnitude(tmp_path, capsys):
    data = arrays()
    x = data["database"][0].copy()
    x[7, 3] = -1e300
    data["database"] = (x, data["database"][1])
    _write_npy(tmp_path, data)
    err = _verify_refuses(tmp_path, capsys, "database features overflow float32", "1e+300")
    assert "NaN" not in err


def test_nan_is_reported_with_its_row(tmp_path, capsys):
    data = arrays()
    x = data["train"][0].astype(np.float32)
    x[11, 0] = np.nan
    data["train"] = (x, data["train"][1])
    _write_npy(tmp_path, data)
    _verify_refuses(tmp_path, capsys, "train features contain NaN or infinite values", "row 11")


def test_float32_npy_is_memory_mapped_and_reaches_the_split_without_a_copy(tmp_path):
    data = {s: (x.astype(np.float32), y) for s, (x, y) in arrays().items()}
    _write_npy(tmp_path, data)
    ds = feats(tmp_path)
    x = ds.arrays["database"][0]
    import mmap

    base = x
    while getattr(base, "base", None) is not None:
        base = base.base
    assert isinstance(base, mmap.mmap) and x.dtype == np.float32   # the file's pages, not a copy
    split = ds.get("database")
    assert np.shares_memory(split.all_inputs(), x)        # ArraySplit wraps the map, no copy
    assert np.array_equal(split.all_inputs(), data["database"][0])
    # a float64 file is cast once, to exactly what astype gives
    _write_npy(tmp_path, {s: (x.astype(np.float64) / 3, y) for s, (x, y) in data.items()})
    got = feats(tmp_path).arrays["query"][0]
    assert got.dtype == np.float32 and np.array_equal(got, (data["query"][0].astype(np.float64) / 3).astype(np.float32))


def test_float64_npy_is_cast_without_keeping_the_file_in_memory(tmp_path):
    """A float64 .npy becomes float32 chunk by chunk, its pages dropped once cast: the process
    holds the float32 array, not also the float64 file (measured in a fresh process)."""
    import json
    import subprocess
    import sys

    rng = np.random.default_rng(0)
    root = tmp_path / "f64"
    root.mkdir()
    for split, n in (("train", 50), ("query", 10), ("database", 120_000)):
        np.save(root / f"{split}_features.npy", rng.standard_normal((n, 256)))  # float64
        np.save(root / f"{split}_labels.npy", (rng.random((n, 3)) < 0.5).astype(np.uint8))
    child = ("import json, sys\n"
             "import torch\n"
             "from hashbench.registry import DATASETS, build, entries\n"
             "entries(DATASETS)\n"
             "rss = lambda key: next(int(l.split()[1]) * 1024 for l in open('/proc/self/status') if l.startswith(key))\n"
             "before = rss('VmRSS:')\n"
             "ds = build(DATASETS, dict(type='features', data_root=sys.argv[1]))\n"
             "x = ds.get('database').all_inputs()\n"
             "print(json.dumps(dict(dtype=str(x.dtype), sum=float(x[:5].sum()), grew=rss('VmHWM:') - before)))\n")
    proc = subprocess.run([sys.executable, "-c", child, str(root)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    want = np.load(root / "database_features.npy")[:5].astype(np.float32)
    assert got["dtype"] == "float32" and got["sum"] == float(want.sum())
    f32_bytes = 120_000 * 256 * 4  # 123 MB; the float64 file is twice that
    assert got["grew"] < 1.5 * f32_bytes, f"peak grew by {got['grew'] / f32_bytes:.2f}x the float32 array"
