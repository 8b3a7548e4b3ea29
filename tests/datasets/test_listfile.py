"""The list-file format: prefixes, label widths and conflicts, missing images, round trips."""
from __future__ import annotations

import logging

import numpy as np
import pytest
from dataset_trees import write_corrupt, write_jpeg, write_lines

from hashbench.errors import HashbenchError
from hashbench.registry import DATASETS, build

PREFIX = "/home/author/datasets/coco/"


@pytest.fixture
def list_tree(tmp_path):
    """20 images under root/imgs, lists with the author's absolute prefix and backslashes."""
    root = tmp_path / "lists"
    labels = {}
    for i in range(20):
        write_jpeg(root / "imgs" / f"{i:03d}.jpg", seed=i)
        labels[f"imgs/{i:03d}.jpg"] = [int(i % 3 == 0), int(i % 2 == 0), int(i % 5 == 0)]

    def line(i):
        name = f"{PREFIX}imgs/{i:03d}.jpg" if i % 2 else f"{PREFIX}imgs\\{i:03d}.jpg"
        return name + " " + " ".join(map(str, labels[f"imgs/{i:03d}.jpg"]))

    write_lines(root / "train.txt", [line(i) for i in range(0, 10)], crlf=True)
    write_lines(root / "test.txt", [line(i) for i in range(10, 14)])
    write_lines(root / "database.txt", [line(i) for i in range(0, 10)] + [line(i) for i in range(14, 20)])
    return root, labels


def lf(root, **kw):
    cfg = dict(type="listfile", data_root=str(root), image_size=16, strip_prefix=PREFIX)
    cfg.update(kw)
    return build(DATASETS, cfg)


def test_splits_are_the_files_with_the_prefix_stripped(list_tree):
    root, labels = list_tree
    ds = lf(root, class_names="person,dog,car")
    assert ds.class_names == ["person", "dog", "car"]
    assert ds.splits() == ("train", "query", "database")
    assert ds.split_sizes() == {"train": 10, "query": 4, "database": 16}
    q = ds.get("query")
    assert q.rel_paths == [f"imgs/{i:03d}.jpg" for i in range(10, 14)]
    for rel, row in zip(q.rel_paths, q.labels):
        assert row.tolist() == labels[rel]
    x, y = q[0]
    assert tuple(x.shape) == (3, 16, 16) and y.tolist() == labels[q.rel_paths[0]]


def test_without_strip_prefix_nothing_is_found_and_the_error_says_so(list_tree):
    root, _ = list_tree
    with pytest.raises(HashbenchError) as err:
        lf(root, strip_prefix=None)
    msg = str(err.value)
    assert PREFIX in msg and "strip_prefix" in msg


def test_validation_carved_from_training_or_given(list_tree):
    root, labels = list_tree
    ds = lf(root, n_val=3, seed=4)
    train, val = set(ds.get("train").rel_paths), set(ds.get("val").rel_paths)
    assert len(train) == 7 and len(val) == 3 and not train & val
    again = lf(root, n_val=3, seed=4, cache_dir=root / "elsewhere")
    assert set(again.get("val").rel_paths) == val
    write_lines(root / "val.txt", [f"imgs/{i:03d}.jpg " + " ".join(map(str, labels[f"imgs/{i:03d}.jpg"]))
                                   for i in (0, 3)])
    given = lf(root, val="val.txt")
    assert given.get("val").rel_paths == ["imgs/000.jpg", "imgs/003.jpg"]
    write_lines(root / "val.txt", ["imgs/010.jpg " + " ".join(map(str, labels["imgs/010.jpg"]))])
    with pytest.raises(HashbenchError, match="also queries"):
        lf(root, val="val.txt")


def test_missing_and_corrupt_images_leave_their_splits_with_a_report(list_tree, caplog):
    root, _ = list_tree
    (root / "imgs" / "011.jpg").unlink()
    write_corrupt(root / "imgs" / "015.jpg")
    with caplog.at_level(logging.WARNING, logger="hashbench.datasets"):
        ds = lf(root)
    assert "imgs/011.jpg" not in ds.get("query").rel_paths and len(ds.get("query")) == 3
    assert any("1 missing" in r.getMessage() for r in caplog.records)
    ds.scan(workers=0)
    assert "imgs/015.jpg" not in ds.get("database").rel_paths
    report = ds.report_file.read_text()
    assert "missing\timgs/011.jpg" in report and "corrupt\timgs/015.jpg" in report
    with pytest.raises(HashbenchError, match="strict"):
        lf(root, strict=True)


def test_label_width_mismatch_names_file_and_line(list_tree):
    root, _ = list_tree
    write_lines(root / "test.txt", ["imgs/010.jpg 1 0 1", "imgs/011.jpg 1 0"])
    with pytest.raises(HashbenchError, match=r"test.txt line 2 has 2 labels, the first line has 3"):
        lf(root)


def test_split_files_with_different_widths(list_tree):
    root, _ = list_tree
    write_lines(root / "test.txt", ["imgs/010.jpg 1 0"])
    with pytest.raises(HashbenchError, match="2 label columns"):
        lf(root)


def test_conflicting_labels_for_one_image(list_tree):
    root, _ = list_tree
    write_lines(root / "train.txt", ["imgs/000.jpg 0 0 1"])
    with pytest.raises(HashbenchError, match="imgs/000.jpg has different labels"):
        lf(root)


def test_missing_list_file_names_where_it_looked(list_tree):
    root, _ = list_tree
    with pytest.raises(HashbenchError) as err:
        lf(root, database="db.txt")
    assert str(root / "db.txt") in str(err.value)


def test_non_binary_label(list_tree):
    root, _ = list_tree
    write_lines(root / "test.txt", ["imgs/010.jpg 1 -1 0"])
    with pytest.raises(HashbenchError, match="labels must be 0 or 1"):
        lf(root)


def test_split_files_written_by_a_protocol_read_back_as_list_files(tmp_path):
    from dataset_trees import make_mirflickr
    root = tmp_path / "mf"
    make_mirflickr(root, n=40)
    mir = build(DATASETS, dict(type="mirflickr25k", data_root=str(root), n_query=5, n_val=0,
                               image_size=16, protocol="standard", n_train=8))
    mir.get("train")
    files = mir.split_info["files"]
    back = build(DATASETS, dict(type="listfile", data_root=str(root), image_size=16,
                                train=files["train"]["path"], query=files["query"]["path"],
                                database=files["database"]["path"], class_names=mir.class_names))
    for name in ("train", "query", "database"):
        assert back.get(name).rel_paths == mir.get(name).rel_paths
        assert np.array_equal(back.get(name).labels, mir.get(name).labels)
