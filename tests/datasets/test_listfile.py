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


# ------------------------------------------------------------------------------ paths outside the root
def _verify(root, *words):
    from hashbench.cli import main

    return main(["data", "verify", "dataset=listfile", f"data_root={root}", "image_size=16", *words, "--json"])


@pytest.fixture
def plain_tree(tmp_path):
    """Six images under root/imgs, lists without prefixes; a real image outside the root."""
    root = tmp_path / "plain"
    for i in range(6):
        write_jpeg(root / "imgs" / f"{i}.jpg", seed=i)
    write_jpeg(tmp_path / "outside" / "secret.jpg", seed=99)
    write_lines(root / "train.txt", ["imgs/0.jpg 1 0", "imgs/1.jpg 0 1"])
    write_lines(root / "test.txt", ["imgs/2.jpg 1 0"])
    write_lines(root / "database.txt", ["imgs/3.jpg 1 0", "imgs/4.jpg 0 1", "imgs/5.jpg 1 1"])
    return root


def test_list_paths_leading_outside_the_root_are_refused_unless_allowed(plain_tree, capsys):
    """A list entry ../../etc/passwd or /etc/hostname was read as a training image."""
    import json

    secret = plain_tree.parent / "outside" / "secret.jpg"
    write_lines(plain_tree / "train.txt", ["imgs/0.jpg 1 0", "../outside/secret.jpg 0 1",
                                           "../../../../../../../../etc/passwd 1 0", f"{secret} 1 1"])
    assert _verify(plain_tree) == 2
    captured = capsys.readouterr()
    err = captured.err.strip()
    assert len(err.splitlines()) == 1 and captured.out == ""
    assert err.startswith("hashbench: error: listfile: 3 image paths lead outside the image root")
    assert f"first: '../outside/secret.jpg' at {plain_tree / 'train.txt'} line 2" in err
    assert "allow_outside_root=true" in err
    assert _verify(plain_tree, "allow_outside_root=true", "decode=false") == 0
    report = json.loads(capsys.readouterr().out)
    assert report["splits"]["train"] == 4  # the opt-in reads them (passwd is not an image: decode=false)


def test_paths_inside_the_root_pass_however_written(plain_tree, tmp_path, capsys):
    """Absolute paths under the root, `..` that stays inside, and symlinks placed inside the root
    (the user's own choice) are all fine."""
    import os

    os.symlink(tmp_path / "outside", plain_tree / "linked")
    write_lines(plain_tree / "train.txt", [f"{plain_tree / 'imgs' / '0.jpg'} 1 0", "imgs/../imgs/1.jpg 0 1",
                                           "linked/secret.jpg 1 1"])
    assert _verify(plain_tree, "decode=false") == 0
    assert capsys.readouterr().out.count('"train": 3') == 1


def test_dotdot_after_a_symlink_counts_from_where_it_leads(plain_tree, tmp_path, capsys):
    import os

    deep = tmp_path / "outside" / "deep"
    deep.mkdir()
    os.symlink(deep, plain_tree / "linked")
    # lexically this is <root>/secret.jpg; the file system reads outside/secret.jpg
    write_lines(plain_tree / "test.txt", ["linked/../secret.jpg 1 0"])
    assert _verify(plain_tree) == 2
    err = capsys.readouterr().err
    assert "1 image path leads outside" in err and "'linked/../secret.jpg'" in err and "test.txt line 1" in err


# ------------------------------------------------------------------------------ symlink loops
def test_a_symlink_loop_in_an_image_folder_hides_no_other_image(plain_tree, capsys):
    """`ln -s loop loop` in imgs/ once made all six images count as missing."""
    import json
    import os

    os.symlink("loop", plain_tree / "imgs" / "loop")
    assert _verify(plain_tree, "decode=false") == 0
    report = json.loads(capsys.readouterr().out)
    assert report["missing"] == 0 and report["usable"] == 6
    write_lines(plain_tree / "test.txt", ["imgs/2.jpg 1 0", "imgs/loop 0 1"])  # the loop itself: missing
    assert _verify(plain_tree, "decode=false") == 0
    report = json.loads(capsys.readouterr().out)
    assert report["missing"] == 1 and report["missing_files"] == ["imgs/loop"] and report["usable"] == 6


# ------------------------------------------------------------------------------ spaces in paths
def test_a_path_with_a_space_is_named_as_such(plain_tree, capsys):
    """`images/my cat.jpg 0 1` once read as "has 3 labels, the first line has 2"."""
    write_lines(plain_tree / "database.txt", ["imgs/3.jpg 1 0", "imgs/my cat.jpg 0 1"])
    assert _verify(plain_tree) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert f"{plain_tree / 'database.txt'} line 2: the path 'imgs/my cat.jpg' contains a space" in err
    assert "may not contain spaces" in err


def test_a_space_in_the_first_lines_path_is_not_taken_for_a_label(plain_tree):
    write_lines(plain_tree / "train.txt", ["imgs/my new cat.jpg 1 0", "imgs/1.jpg 0 1"])
    with pytest.raises(HashbenchError, match=r"train.txt line 1: the path 'imgs/my new cat.jpg' contains a space"):
        lf(plain_tree, strip_prefix=None)


def test_a_numeric_bad_label_is_still_a_bad_label(plain_tree):
    write_lines(plain_tree / "train.txt", ["imgs/0.jpg 2 0", "imgs/1.jpg 0 1"])
    with pytest.raises(HashbenchError, match="labels must be 0 or 1, got '2'"):
        lf(plain_tree, strip_prefix=None)


def test_strip_prefix_auto_finds_the_authors_prefix(list_tree):
    root, labels = list_tree
    auto = lf(root, strip_prefix="auto")
    assert auto.strip_prefix == [PREFIX]
    assert list(auto.get("database").rel_paths) == list(lf(root).get("database").rel_paths)
    for rel, row in zip(auto.get("train").rel_paths, auto.get("train").labels):
        assert list(row) == labels[rel]
    clean = root.parent / "clean"  # paths already relative: nothing to strip
    write_lines(clean / "train.txt", ["imgs/000.jpg 1 0", "imgs/001.jpg 0 1"])
    write_lines(clean / "test.txt", ["imgs/001.jpg 0 1"])
    write_lines(clean / "database.txt", ["imgs/000.jpg 1 0"])
    for i in range(2):
        write_jpeg(clean / "imgs" / f"{i:03d}.jpg", seed=i)
    assert lf(clean, strip_prefix="auto").strip_prefix == []
    with pytest.raises(HashbenchError, match="strip_prefix=auto: no tail of .* is a file under"):
        (root.parent / "empty").mkdir()
        lf(root.parent / "empty", strip_prefix="auto", train=str(root / "train.txt"))


def test_label_count_and_single_label_checks(list_tree):
    root, _ = list_tree
    assert lf(root, n_classes=3).num_classes == 3
    with pytest.raises(HashbenchError, match="database.txt has 3 label columns; this benchmark has 80"):
        lf(root, n_classes=80)
    with pytest.raises(HashbenchError, match=r"line 1 carries 3 labels; this benchmark is single-label"):
        lf(root, single_label=True)  # image 0 has all three


def test_the_published_list_presets_run_through_the_cli(tmp_path, list_tree):
    """dataset=coco: the preset's prefix search, label count and metric cut on a tree with 80 columns."""
    import json

    from hashbench.cli import main

    root = tmp_path / "coco"
    rows = []
    for i in range(24):
        write_jpeg(root / "train2014" / f"COCO_{i:03d}.jpg", seed=i)
        cols = np.zeros(80, int)
        cols[[i % 80, (3 * i) % 80]] = 1
        rows.append(f"/data/someone/coco/train2014/COCO_{i:03d}.jpg " + " ".join(map(str, cols)))
    write_lines(root / "train.txt", rows[:12])
    write_lines(root / "test.txt", rows[12:16])
    write_lines(root / "database.txt", rows[:12] + rows[16:])
    out = tmp_path / "out"
    assert main(["run", "dataset=coco", f"data_root={root}", "dataset.image_size=16", "methods=lsh", "bits=8",
                 "classic.features=pixels", f"out={out}"]) == 0
    rec = json.loads((out / "results.jsonl").read_text())
    assert rec["config"]["dataset"]["n_classes"] == 80 and "map@5000" in rec["metrics"]
    assert rec["config"]["eval"]["tables"] == ["map@5000", "ndcg@100"]
    assert main(["run", "dataset=imagenet100", f"data_root={root}", "methods=lsh", f"out={tmp_path / 'o2'}"]) == 2
