"""The dataset contract, checked on every registered dataset (a new one must add a tiny instance
here, or the first test fails): splits, items, labels, ids, counts, and the `data` commands."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from dataset_trees import (cifar_batches, make_features_npz, make_mirflickr, make_nuswide, write_cifar_bin, write_jpeg,
                           write_lines)

from hashbench.cli import main
from hashbench.datasets.base import SPLITS, HashingDataset
from hashbench.errors import HashbenchError
from hashbench.registry import DATASETS, build, entries


def _listfile(root):
    for i in range(12):
        write_jpeg(root / "imgs" / f"{i}.jpg", seed=i)
    line = lambda i: f"imgs/{i}.jpg {i % 2} {int(i % 3 == 0)}"  # noqa: E731
    write_lines(root / "train.txt", [line(i) for i in range(6)])
    write_lines(root / "test.txt", [line(i) for i in range(6, 9)])
    write_lines(root / "database.txt", [line(i) for i in range(9, 12)] + [line(i) for i in range(6)])
    return dict(type="listfile", data_root=str(root))


def _features(root):
    root.mkdir(parents=True)
    make_features_npz(root / "f.npz", dict(train=20, query=5, database=30), dim=6, classes=4, p_label=0.4)
    return dict(type="features", data_root=str(root / "f.npz"))


TINY = {
    "multidigits": lambda root: dict(type="multidigits", n_train=12, n_query=4, n_database=10, cache_dir=str(root)),
    "features": _features,
    "listfile": _listfile,
    "mirflickr25k": lambda root: (make_mirflickr(root), dict(type="mirflickr25k", data_root=str(root), n_query=8,
                                                              n_val=4, n_train=20, image_size=16))[1],
    "nuswide81": lambda root: (make_nuswide(root), dict(type="nuswide81", data_root=str(root), n_query=10,
                                                         n_val=5, image_size=16))[1],
    "cifar10": lambda root: (write_cifar_bin(root, cifar_batches(per_batch=20)),
                             dict(type="cifar10", data_root=str(root), protocol="p2", n_val=5,
                                  cache_dir=str(root / "cache")))[1],
    "nuswide21": lambda root: (make_nuswide(root), dict(type="nuswide21", data_root=str(root), per_concept_query=1,
                                                         per_concept_train=2, n_val=5, image_size=16,
                                                         scale_down=True))[1],
}


def test_every_registered_dataset_has_a_tiny_instance_here():
    assert set(entries(DATASETS)) <= set(TINY), sorted(set(entries(DATASETS)) - set(TINY))


@pytest.fixture(params=sorted(TINY))
def dataset(request, tmp_path):
    cfg = TINY[request.param](tmp_path / request.param)
    return request.param, cfg, build(DATASETS, cfg)


def test_splits_items_labels_and_ids(dataset):
    name, _, ds = dataset
    assert isinstance(ds, HashingDataset) and ds.name == name and ds.kind in ("images", "features")
    assert set(SPLITS) <= set(ds.splits()) and set(ds.splits()) <= set(SPLITS) | {"val"}
    sizes = ds.split_sizes()
    assert list(sizes) == list(ds.splits())
    ids = {}
    for s in ds.splits():
        split = ds.get(s)
        labels = np.asarray(split.labels)
        assert len(split) == sizes[s] > 0 and labels.shape == (len(split), ds.num_classes) and labels.dtype == np.uint8
        x, y = split[0]
        assert torch.equal(y, torch.as_tensor(labels[0], dtype=torch.float32))
        if ds.kind == "images":
            assert x.dtype == torch.uint8 and x.ndim == 3 and x.shape[0] == 3
        else:
            assert x.dtype == torch.float32 and x.ndim == 1
        assert len(split.ids) == len(split) == len(set(split.ids))  # one id per item
        inputs = split.all_inputs()
        assert len(inputs) == len(split) and torch.equal(torch.as_tensor(inputs[0]), x)
        ids[s] = dict(zip(split.ids, labels.tolist()))
    # the same id names the same item: it carries the same labels in every split
    for a in ds.splits():
        for b in ds.splits():
            for shared in set(ids[a]) & set(ids[b]):
                assert ids[a][shared] == ids[b][shared]
    with pytest.raises(HashbenchError, match=f"has no split 'tset'; valid: {', '.join(ds.splits())}"):
        ds.get("tset")


def test_inventory_counts_and_verify_through_the_cli(dataset, capsys):
    name, cfg, ds = dataset
    inv = ds.inventory()
    assert {"dataset", "kind", "images", "labelled", "classes", "class_names", "missing", "corrupt", "usable",
            "published"} <= set(inv)
    assert inv["dataset"] == name and inv["classes"] == ds.num_classes == len(inv["class_names"])
    words = [f"{k}={v}" for k, v in cfg.items() if k != "type"]
    status = main(["data", "verify", f"dataset={name}", *words, "--json"])
    report = json.loads(capsys.readouterr().out)
    ds.scan()  # what verify does first: corrupt files leave the pool
    assert status == 0 and report["splits"] == ds.split_sizes() and report["dataset"] == name
    assert report["corrupt"] == ds.inventory()["corrupt"]


def test_prepare_applies_only_to_files_on_disk(dataset, capsys):
    name, cfg, ds = dataset
    words = [f"{k}={v}" for k, v in cfg.items() if k != "type"]
    status = main(["data", "prepare", f"dataset={name}", *words, "--json"])
    captured = capsys.readouterr()
    if ds.preparable:
        assert status == 0 and json.loads(captured.out)["images"] == ds.inventory()["usable"] + ds.inventory()["corrupt"]
    else:
        assert status == 2 and "there is nothing to prepare" in captured.err and captured.err.count("\n") == 1


@pytest.mark.parametrize("name", sorted(TINY))
def test_parameters_are_declared(name):
    """Every parameter of every dataset has a declared kind: a bad value is refused before loading."""
    import inspect

    from hashbench.params import constraints_of

    cls = entries(DATASETS)[name]
    declared = constraints_of(cls)
    params = [p for p in inspect.signature(cls).parameters]
    assert set(params) <= set(declared), sorted(set(params) - set(declared))
