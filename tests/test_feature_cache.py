"""The frozen-backbone feature cache: hits, and a new key whenever what the features depend on changes.

Oracle: a fresh :func:`hashbench.encode.extract_features` pass; a hit is proven by making the
extractor fail.
"""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import hashbench.encode
from hashbench.feature_cache import cached_features, weights_fingerprint
from hashbench.registry import BACKBONES, DATASETS, build

BACKBONE = dict(type="timm", name="test_resnet")
CPU = torch.device("cpu")


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return build(DATASETS, dict(type="multidigits", n_train=64, n_query=16, n_database=32,
                                cache_dir=str(tmp_path_factory.mktemp("multidigits"))))


def features(split, cache_dir, *, seed=0, backbone_cfg=BACKBONE, split_key="multidigits/tiny/query"):
    torch.manual_seed(seed)  # an untrained backbone's weights come from the seed
    return cached_features(backbone_cfg, split, split_key=split_key, device=CPU, cache_dir=cache_dir)


def entries(cache_dir):
    return sorted(p.name for p in (cache_dir / "features").glob("*.npy"))


@pytest.fixture
def no_extraction(monkeypatch):
    def fail(*args, **kwargs):
        raise AssertionError("features were extracted again instead of read from the cache")

    monkeypatch.setattr(hashbench.encode, "extract_features", fail)


def test_first_call_extracts_and_equals_a_fresh_pass(data, tmp_path):
    split = data.get("query")
    got = features(split, tmp_path)
    torch.manual_seed(0)
    fresh = hashbench.encode.extract_features(build(BACKBONES, {**BACKBONE, "frozen": True}), split, CPU)
    assert got.dtype == np.float32 and got.shape == (16, fresh.shape[1])
    np.testing.assert_array_equal(got, fresh)
    (npy,) = entries(tmp_path)
    manifest = json.loads((tmp_path / "features" / npy.replace(".npy", ".json")).read_text())
    assert manifest["split_key"] == "multidigits/tiny/query" and manifest["shape"] == [16, fresh.shape[1]]
    assert manifest["transform"]["input_shape"] == [3, 32, 32] and manifest["backbone"]["frozen"] is True
    assert not list((tmp_path / "features").glob(".*tmp*"))  # written atomically, nothing left behind


def test_same_inputs_hit_the_cache(data, tmp_path, monkeypatch):
    split = data.get("query")
    first = features(split, tmp_path)
    monkeypatch.setattr(hashbench.encode, "extract_features", lambda *a, **k: pytest.fail("extracted twice"))
    np.testing.assert_array_equal(features(split, tmp_path), first)
    assert len(entries(tmp_path)) == 1


def test_key_changes_with_the_weights(data, tmp_path):
    split = data.get("query")
    features(split, tmp_path, seed=0)
    features(split, tmp_path, seed=1)  # another random initialisation
    assert len(entries(tmp_path)) == 2
    # a checkpoint file: same config keys, weights from the file; another file at the same path
    torch.manual_seed(2)
    model = build(BACKBONES, BACKBONE).model
    ckpt = tmp_path / "w.pth"
    torch.save(model.state_dict(), ckpt)
    cfg = {**BACKBONE, "checkpoint": str(ckpt)}
    a = features(split, tmp_path, backbone_cfg=cfg)
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(1.5)
    torch.save(model.state_dict(), ckpt)
    b = features(split, tmp_path, backbone_cfg=cfg)
    assert len(entries(tmp_path)) == 4 and not np.array_equal(a, b)


def test_weights_fingerprint_sees_every_tensor():
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.BatchNorm1d(2))
    before = weights_fingerprint(net)
    net[1].running_mean += 1e-6  # a buffer, not a parameter
    assert weights_fingerprint(net) != before


def test_key_changes_with_the_transform(data, tmp_path, monkeypatch):
    split = data.get("query")
    features(split, tmp_path)
    real_init = hashbench.backbones.TimmBackbone.__init__

    def other_std(self, *args, **kwargs):
        real_init(self, *args, **kwargs)
        self.std = tuple(v / 2 for v in self.std)

    monkeypatch.setattr(hashbench.backbones.TimmBackbone, "__init__", other_std)
    features(split, tmp_path)  # same weights, other normalisation
    monkeypatch.undo()
    big = build(DATASETS, dict(type="multidigits", n_train=64, n_query=16, n_database=32, canvas_size=48,
                               cache_dir=str(tmp_path / "data48")))
    features(big.get("query"), tmp_path)  # same key string, other image size (a safety net, not a key to rely on)
    assert len(entries(tmp_path)) == 3


def test_key_changes_with_the_split_key(data, tmp_path, no_extraction):
    split = data.get("query")
    with pytest.raises(AssertionError, match="extracted again"):
        features(split, tmp_path, split_key="multidigits/tiny/database")  # a miss must extract
    assert entries(tmp_path) == []


def test_key_changes_with_the_items_under_the_same_names(data, tmp_path):
    """An edited list file keeps the dataset's parameters (the split key) and may keep the number
    of items and their labels: the items themselves (ids, inputs) are part of the key."""
    from hashbench.datasets.base import ArraySplit

    split = data.get("query")
    features(split, tmp_path)
    inputs = split.all_inputs()
    swapped = ArraySplit(inputs[::-1].copy(), split.labels, ids=split.ids)  # same ids and labels, other images
    b = features(swapped, tmp_path)
    renamed = ArraySplit(inputs, split.labels, ids=[f"other/{i}" for i in range(len(split))])
    features(renamed, tmp_path)
    assert len(entries(tmp_path)) == 3
    torch.manual_seed(0)
    fresh = hashbench.encode.extract_features(build(BACKBONES, {**BACKBONE, "frozen": True}), swapped, CPU)
    np.testing.assert_array_equal(b, fresh)


def test_unreadable_entry_is_extracted_again(data, tmp_path):
    split = data.get("query")
    first = features(split, tmp_path)
    (npy,) = entries(tmp_path)
    (tmp_path / "features" / npy).write_bytes(b"not an array")
    np.testing.assert_array_equal(features(split, tmp_path), first)


def test_a_sweep_hashes_the_backbone_weights_once(tmp_path, monkeypatch):
    """Three splits × two methods of one backbone: one fingerprint, three cache entries."""
    import hashbench.feature_cache
    import hashbench.runner
    from hashbench.cli import main

    calls = []

    def counted(module):
        calls.append(type(module).__name__)
        return weights_fingerprint(module)

    monkeypatch.setattr(hashbench.runner, "weights_fingerprint", counted)
    monkeypatch.setattr(hashbench.feature_cache, "weights_fingerprint", counted)
    monkeypatch.setenv("HASHBENCH_CACHE", str(tmp_path / "cache"))
    assert main(["run", "methods=lsh,pcah", "bits=8", "dataset.n_train=64", "dataset.n_query=16",
                 "dataset.n_database=32", "device=cpu", f"out={tmp_path / 'out'}"]) == 0
    assert len(calls) == 1 and len(entries(tmp_path / "cache")) == 3
