"""CIFAR-10 from small trees in both distributed layouts: the binary records and the pickled batches."""
import json
import pickle

import numpy as np
import pytest

from dataset_trees import cifar_batches as batches
from dataset_trees import write_cifar_bin as write_bin
from dataset_trees import write_cifar_py as write_py

from hashbench.errors import HashbenchError
from hashbench.registry import DATASETS, build

def cifar(root, tmp_path, **kw):
    return build(DATASETS, dict(type="cifar10", data_root=str(root), cache_dir=str(tmp_path / "cache"), **kw))


@pytest.mark.parametrize("layout", ["bin", "py"])
def test_both_layouts_read_pixels_labels_and_names_exactly(tmp_path, layout):
    data = batches()
    (write_bin if layout == "bin" else write_py)(tmp_path / "c", data)
    ds = cifar(tmp_path / "c", tmp_path, protocol="p2")
    assert ds.format == layout and ds.class_names == [f"class{c}" for c in range(10)]
    q = ds.get("query")
    assert len(q) == 60 and list(q.ids[:2]) == ["test_batch/0", "test_batch/1"]
    x, y = data["test_batch"]
    assert np.array_equal(q.all_inputs(), x) and np.array_equal(q.labels.argmax(1), y)
    assert np.array_equal(q.labels.sum(1), np.ones(60))  # one label each
    train = ds.get("train")
    assert len(train) == 300 and list(ds.get("database").ids) == list(train.ids)
    assert np.array_equal(train.all_inputs()[60:120], data["data_batch_2"][0])


def test_binary_is_preferred_and_the_batch_folder_itself_works(tmp_path):
    data = batches()
    write_bin(tmp_path / "c", data)
    write_py(tmp_path / "c", batches(seed=1))
    assert cifar(tmp_path / "c", tmp_path, protocol="p2").format == "bin"
    ds = cifar(tmp_path / "c" / "cifar-10-batches-py", tmp_path, protocol="p2")
    assert ds.format == "py"


def test_p1_draws_per_class_queries_and_training_images_seeded_and_written(tmp_path):
    write_bin(tmp_path / "c", batches())
    ds = cifar(tmp_path / "c", tmp_path, per_concept_query=2, per_concept_train=5)
    sets = {k: set(ds.get(k).ids) for k in ds.splits()}
    assert len(sets["query"]) == 20 and len(sets["train"]) == 50 and len(sets["database"]) == 340
    assert not sets["query"] & sets["database"] and sets["train"] <= sets["database"]
    for split, per in (("query", 2), ("train", 5)):
        assert np.array_equal(ds.get(split).labels.sum(0), np.full(10, per))
    files = ds.split_files()
    assert set(files["files"]) == {"train", "query", "database"}
    again = cifar(tmp_path / "c", tmp_path, per_concept_query=2, per_concept_train=5)
    assert list(again.get("query").ids) == list(ds.get("query").ids)
    other = cifar(tmp_path / "c", tmp_path, per_concept_query=2, per_concept_train=5, seed=1)
    assert list(other.get("query").ids) != list(ds.get("query").ids)
    meta = json.loads((tmp_path / "cache" / "splits" / files["dir"].split("/")[-1] / "split.json").read_text())
    assert meta["files"]["query"]["count"] == 20


def test_p2_val_is_carved_from_the_training_set(tmp_path):
    write_bin(tmp_path / "c", batches())
    ds = cifar(tmp_path / "c", tmp_path, protocol="p2", n_val=30)
    sets = {k: set(ds.get(k).ids) for k in ds.splits()}
    assert len(sets["val"]) == 30 and len(sets["train"]) == 270 and len(sets["database"]) == 300
    assert not sets["val"] & sets["train"] and sets["val"] <= sets["database"]


def test_a_hostile_pickle_is_refused_before_it_runs(tmp_path):
    folder = write_py(tmp_path / "c", batches())
    marker = tmp_path / "ran"

    class Evil:
        def __reduce__(self):
            import os
            return (os.system, (f"touch {marker}",))

    with open(folder / "data_batch_3", "wb") as f:
        pickle.dump({b"data": Evil(), b"labels": []}, f, protocol=2)
    with pytest.raises(HashbenchError, match=r"data_batch_3 refused: it asks for (posix|os)\.system"):
        cifar(tmp_path / "c", tmp_path)
    assert not marker.exists()


def test_damaged_and_missing_batches_are_named(tmp_path):
    folder = write_bin(tmp_path / "c", batches())
    with open(folder / "data_batch_2.bin", "ab") as f:
        f.write(b"\0" * 10)
    with pytest.raises(HashbenchError, match="data_batch_2.bin has .* not a whole number of 3073-byte records"):
        cifar(tmp_path / "c", tmp_path)
    (folder / "data_batch_2.bin").unlink()
    with pytest.raises(HashbenchError, match="data_batch_2.bin is missing"):
        cifar(tmp_path / "c", tmp_path)
    with pytest.raises(HashbenchError, match="no cifar-10-batches-bin/ or cifar-10-batches-py/"):
        cifar(tmp_path, tmp_path)


def test_cifar10_runs_and_verifies_through_the_cli(tmp_path, capsys):
    from hashbench.cli import main

    write_bin(tmp_path / "c", batches())
    out = tmp_path / "out"
    words = [f"data_root={tmp_path / 'c'}", "dataset.protocol=p2", f"dataset.cache_dir={tmp_path / 'cache'}"]
    assert main(["run", "dataset=cifar10", *words, "methods=lsh", "bits=8", "classic.features=pixels",
                 f"out={out}"]) == 0
    rec = json.loads((out / "results.jsonl").read_text())
    assert rec["dataset"] == "cifar10" and rec["config"]["dataset"]["protocol"] == "p2"
    assert rec["config"]["eval"]["tables"] == ["map", "p@h2"]
    assert 0 <= rec["metrics"]["map"] <= 1
    capsys.readouterr()
    assert main(["data", "verify", "dataset=cifar10", f"data_root={tmp_path / 'c'}", "protocol=p2", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["images"] == 360 and summary["classes"] == 10
