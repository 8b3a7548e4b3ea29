"""MIRFLICKR-25K: parsing, label order, drops, protocols, split files, bad images, the cache."""
from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest
import torch
from dataset_trees import MIR_POTENTIAL, MIR_R1, write_jpeg
from torch.utils.data import DataLoader

from hashbench.datasets._images import load_image
from hashbench.errors import HashbenchError
from hashbench.registry import DATASETS, build


def mir(root, **kw):
    cfg = dict(type="mirflickr25k", data_root=str(root), image_size=16, n_query=10, n_train=20,
               n_val=5)
    cfg.update(kw)
    return build(DATASETS, cfg)


def number(rel: str) -> int:
    return int(Path(rel).stem[2:])


def all_items(ds):
    """{image number: label row} over every split, checking that splits agree."""
    seen = {}
    for name in ds.splits():
        s = ds.get(name)
        for rel, row in zip(s.rel_paths, s.labels):
            n = number(rel)
            assert seen.setdefault(n, tuple(row)) == tuple(row)
    return seen


def test_label_columns_are_the_fixed_alphabetical_potential_labels(mirflickr_tree):
    root, expected = mirflickr_tree
    ds = mir(root)
    assert ds.class_names == MIR_POTENTIAL == sorted(MIR_POTENTIAL)
    assert ds.kind == "images"
    seen = all_items(ds)
    for n, row in seen.items():
        assert sorted(np.flatnonzero(row).tolist()) == expected[n], n


def test_unlabelled_missing_and_r1_only_images_are_not_used(mirflickr_tree, caplog):
    root, _ = mirflickr_tree
    with caplog.at_level(logging.WARNING, logger="hashbench.datasets"):
        ds = mir(root)
    used = set(all_items(ds))
    assert 3 not in used and 11 not in used  # unlabelled (11 is only in baby_r1.txt)
    assert 5 not in used  # missing
    assert used == set(range(1, 61)) - {3, 5, 11}
    inv = ds.inventory()
    assert (inv["images"], inv["labelled"], inv["missing"], inv["classes"]) == (59, 57, 1, 24)
    assert inv["missing_files"] == ["mirflickr/im5.jpg"]
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "\n" not in warnings[0].getMessage()
    assert "1 missing" in warnings[0].getMessage()
    report = Path(inv["report"]).read_text()
    assert "missing\tmirflickr/im5.jpg" in report


def test_r1_labels_only_when_asked(mirflickr_tree):
    root, _ = mirflickr_tree
    ds = mir(root, label_set="r1", n_query=1, n_val=0)
    assert ds.class_names == [f"{c}_r1" for c in MIR_R1]
    assert set(all_items(ds)) == {1, 2, 11}
    both = mir(root, label_set="both")
    assert both.class_names == MIR_POTENTIAL + [f"{c}_r1" for c in MIR_R1]
    assert 11 in set(all_items(both))
    with pytest.raises(HashbenchError, match="label_set"):
        mir(root, label_set="strict")


def test_dsrh_protocol_sizes_and_overlaps(mirflickr_tree):
    root, _ = mirflickr_tree
    ds = mir(root, protocol="dsrh")
    assert ds.splits() == ("train", "query", "database", "val")
    sets = {k: set(ds.get(k).rel_paths) for k in ds.splits()}
    assert {k: len(v) for k, v in sets.items()} == {"query": 10, "database": 47, "val": 5,
                                                    "train": 42}
    assert not sets["query"] & sets["database"]
    assert sets["train"] | sets["val"] == sets["database"]
    assert not sets["train"] & sets["val"]


def test_standard_protocol_sizes_and_overlaps(mirflickr_tree):
    root, _ = mirflickr_tree
    ds = mir(root, protocol="standard")
    sets = {k: set(ds.get(k).rel_paths) for k in ds.splits()}
    assert {k: len(v) for k, v in sets.items()} == {"query": 10, "database": 47, "val": 5,
                                                    "train": 20}
    assert sets["train"] <= sets["database"] and sets["val"] <= sets["database"]
    assert not sets["train"] & sets["val"] and not sets["query"] & sets["database"]


def test_no_val_split_when_n_val_is_zero(mirflickr_tree):
    root, _ = mirflickr_tree
    ds = mir(root, n_val=0)
    assert ds.splits() == ("train", "query", "database")
    with pytest.raises(HashbenchError, match="no split 'val'"):
        ds.get("val")


def test_splits_are_seeded_written_with_sha256_and_reused(mirflickr_tree, tmp_path, caplog):
    root, _ = mirflickr_tree
    a = mir(root, cache_dir=tmp_path / "c1")
    b = mir(root, cache_dir=tmp_path / "c2")
    c = mir(root, cache_dir=tmp_path / "c1", seed=1)
    for k in a.splits():
        assert a.get(k).rel_paths == b.get(k).rel_paths
    assert a.get("query").rel_paths != c.get("query").rel_paths

    folder = Path(a.split_info["dir"])
    meta = json.loads((folder / "split.json").read_text())
    import hashlib
    for name, info in meta["files"].items():
        data = (folder / info["file"]).read_bytes()
        assert hashlib.sha256(data).hexdigest() == info["sha256"]
        assert len(data.splitlines()) == info["count"] == len(a.get(name))
    line = (folder / "query.txt").read_text().splitlines()[0].split()
    assert line[0].startswith("mirflickr/im") and len(line) == 25

    # A stored split is read back, not drawn again: edit the generator's output by hand …
    query_file = folder / "query.txt"
    stamp = query_file.stat().st_mtime_ns
    again = mir(root, cache_dir=tmp_path / "c1")
    assert again.get("query").rel_paths == a.get("query").rel_paths
    assert query_file.stat().st_mtime_ns == stamp
    # … and a split file changed on disk is noticed and replaced.
    lines = query_file.read_text().splitlines()
    query_file.write_text("\n".join(lines[1:]) + "\n")
    with caplog.at_level(logging.WARNING, logger="hashbench.datasets"):
        fixed = mir(root, cache_dir=tmp_path / "c1")
        assert fixed.get("query").rel_paths == a.get("query").rel_paths
    assert any("changed since it was written" in r.getMessage() for r in caplog.records)


def test_default_split_folder_honours_hashbench_cache(mirflickr_tree, tmp_path):
    root, _ = mirflickr_tree
    ds = mir(root)
    ds.get("train")
    assert Path(ds.split_info["dir"]).is_relative_to(tmp_path / "hb-cache" / "mirflickr25k")


def test_tree_too_small_says_what_was_asked_and_scale_down_shrinks(mirflickr_tree, caplog):
    root, _ = mirflickr_tree
    ds = mir(root, n_query=2000, n_val=1000)
    with pytest.raises(HashbenchError) as err:
        ds.get("train")
    msg = str(err.value)
    assert "2000 query" in msg and "1000 val" in msg and "57" in msg and "scale_down" in msg
    small = mir(root, n_query=2000, n_val=1000, scale_down=True)
    with caplog.at_level(logging.WARNING, logger="hashbench.datasets"):
        sizes = small.split_sizes()
    assert 0 < sizes["query"] + sizes["val"] <= 57 // 2 and sizes["train"] > 0
    assert any("scale_down" in r.getMessage() for r in caplog.records)


def test_unknown_protocol_lists_valid_ones(mirflickr_tree):
    root, _ = mirflickr_tree
    with pytest.raises(HashbenchError, match="protocol must be one of dsrh, standard; got"):
        mir(root, protocol="dpsh")


def test_wrong_data_root_names_the_expected_file(tmp_path):
    empty = tmp_path / "elsewhere"
    empty.mkdir()
    with pytest.raises(HashbenchError) as err:
        mir(empty)
    msg = str(err.value)
    assert str(empty / "mirflickr") in msg and "\n" not in msg
    with pytest.raises(HashbenchError, match="not a folder"):
        mir(tmp_path / "does-not-exist")


def test_missing_annotation_file_is_named(mirflickr_tree):
    root, _ = mirflickr_tree
    (root / "mirflickr25k_annotations_v080" / "sky.txt").unlink()
    with pytest.raises(HashbenchError, match="sky.txt"):
        mir(root)


def test_annotation_folder_missing_lists_places_looked(tmp_path):
    write_jpeg(tmp_path / "d" / "mirflickr" / "im1.jpg", 0)
    with pytest.raises(HashbenchError) as err:
        mir(tmp_path / "d")
    assert "animals.txt" in str(err.value) and "mirflickr25k_annotations_v080" in str(err.value)


def test_bad_annotation_line_names_file_and_line(mirflickr_tree):
    root, _ = mirflickr_tree
    path = root / "mirflickr25k_annotations_v080" / "dog.txt"
    path.write_text("1\n2\nim3\n")
    with pytest.raises(HashbenchError, match=r"dog.txt line 3"):
        mir(root)


def test_data_root_inside_the_image_folder(mirflickr_tree):
    root, _ = mirflickr_tree
    ds = mir(root / "mirflickr", annotation_dir=root / "mirflickr25k_annotations_v080")
    assert ds.get("query").rel_paths[0].startswith("im")
    assert len(ds.get("database")) == 47


def test_items_are_uint8_images_and_float_multi_hot(mirflickr_tree):
    root, _ = mirflickr_tree
    split = mir(root, image_size=24).get("query")
    i = next(i for i, r in enumerate(split.rel_paths) if r != "mirflickr/im7.jpg")
    x, y = split[i]
    assert x.dtype == torch.uint8 and tuple(x.shape) == (3, 24, 24)
    assert y.dtype == torch.float32 and y.shape == (24,)
    assert np.array_equal(y.numpy(), split.labels[i]) and split.labels.dtype == np.uint8
    assert np.array_equal(x.numpy(), load_image(split.paths[i], 24))


def test_corrupt_image_is_found_by_a_scan_and_then_excluded(mirflickr_tree):
    root, _ = mirflickr_tree
    ds = mir(root)
    assert 7 in set(all_items(ds))
    ds.scan(workers=0)
    inv = ds.inventory()
    assert inv["corrupt"] == 1 and list(inv["corrupt_files"]) == ["mirflickr/im7.jpg"]
    assert "corrupt\tmirflickr/im7.jpg" in Path(inv["report"]).read_text()
    assert 7 not in set(all_items(ds))
    later = mir(root)  # remembered by the scan log
    assert later.inventory()["corrupt"] == 1 and 7 not in set(all_items(later))
    # a repaired file is trusted again
    write_jpeg(root / "mirflickr" / "im7.jpg", 7)
    assert mir(root).inventory()["corrupt"] == 0


def test_an_epoch_survives_an_undetected_corrupt_image(mirflickr_tree, caplog):
    root, _ = mirflickr_tree
    ds = mir(root, n_query=1, n_val=0)
    split = ds.get("database")
    bad = [i for i, r in enumerate(split.rel_paths) if r == "mirflickr/im7.jpg"]
    assert bad
    with caplog.at_level(logging.WARNING, logger="hashbench.datasets"):
        batches = list(DataLoader(split, batch_size=16))
    images = torch.cat([b[0] for b in batches])
    assert len(images) == len(split)
    assert images[bad[0]].sum() == 0
    assert any("im7.jpg" in r.getMessage() for r in caplog.records)
    assert "im7.jpg" in ds.report_file.read_text()


def test_strict_refuses_missing_then_corrupt_before_training(mirflickr_tree):
    root, _ = mirflickr_tree
    with pytest.raises(HashbenchError) as err:
        mir(root, strict=True)
    assert "1 missing" in str(err.value) and "strict" in str(err.value)
    write_jpeg(root / "mirflickr" / "im5.jpg", 5)
    with pytest.raises(HashbenchError, match="1 corrupt"):
        mir(root, strict=True)  # decodes everything up front
    write_jpeg(root / "mirflickr" / "im7.jpg", 7)
    assert len(mir(root, strict=True).get("database")) == 48


def test_prepared_cache_returns_the_same_pixels_as_decoding(mirflickr_tree):
    root, _ = mirflickr_tree
    ds = mir(root, image_size=20)
    summary = ds.prepare(workers=0)
    assert summary["images"] == 57 and summary["corrupt"] == 1
    assert 7 not in set(all_items(ds))
    fresh = mir(root, image_size=20)
    assert fresh.inventory()["prepared_cache"] is not None
    split = fresh.get("database")
    assert split.cache_file is not None and (split.rows >= 0).all()
    decoded = [load_image(p, 20) for p in split.paths]
    for path in split.paths:  # from now on only the cache can provide pixels
        path.unlink()
    for i in range(len(split)):
        assert np.array_equal(split[i][0].numpy(), decoded[i])
    # the black row of a corrupt file is never served: once repaired, the file is decoded
    write_jpeg(root / "mirflickr" / "im7.jpg", 7)
    repaired = mir(root, image_size=20, n_query=1, n_val=0).get("database")
    i = repaired.rel_paths.index("mirflickr/im7.jpg")
    assert repaired.rows[i] == -1
    assert np.array_equal(repaired[i][0].numpy(), load_image(root / "mirflickr" / "im7.jpg", 20))
    # a different image size does not use the cache
    other = mir(root, image_size=24)
    assert other.inventory()["prepared_cache"] is None


def test_a_symlink_loop_among_the_images_counts_as_one_missing_image(mirflickr_tree, capsys):
    """A self-referencing im5.jpg once ended the build with an OSError traceback."""
    import os

    from hashbench.cli import main

    root, _ = mirflickr_tree
    os.symlink("im5.jpg", root / "mirflickr" / "im5.jpg")  # im5 is annotated, its file absent
    os.symlink("loop", root / "mirflickr" / "loop")
    status = main(["data", "verify", "dataset=mirflickr25k", f"data_root={root}", "n_query=10", "n_val=5",
                   "image_size=16", "decode=false", "--json"])
    report = json.loads(capsys.readouterr().out)
    assert status == 0 and report["missing"] == 1 and report["missing_files"] == ["mirflickr/im5.jpg"]
    assert report["usable"] == 57  # 58 labelled, im5 missing (nothing decoded)
