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
