"""NUS-WIDE (81 and 21 concepts): Windows paths, CRLF, alignment, concept choice, protocols."""
from __future__ import annotations

import logging

import numpy as np
import pytest
from dataset_trees import NUS_CONCEPTS, NUS_FREQUENT, make_nuswide

from hashbench.errors import HashbenchError
from hashbench.registry import DATASETS, build


def nus(name, root, **kw):
    cfg = dict(type=name, data_root=str(root), image_size=16, n_val=4)
    cfg.update(kw)
    return build(DATASETS, cfg)


def union(ds):
    seen = {}
    for name in ds.splits():
        s = ds.get(name)
        for rel, row in zip(s.rel_paths, s.labels):
            assert seen.setdefault(rel, tuple(row)) == tuple(row)
    return seen


def test_nuswide81_reads_windows_paths_crlf_and_aligned_labels(nuswide_tree):
    root, truth = nuswide_tree
    ds = nus("nuswide81", root, n_query=10)
    assert ds.class_names == NUS_CONCEPTS
    index = {r: i for i, r in enumerate(truth["rels"])}
    seen = union(ds)
    # every entry but the unlabelled (4, 40) and the missing one (6)
    assert set(seen) == {r for i, r in enumerate(truth["rels"]) if i not in (4, 40, 6)}
    for rel, row in seen.items():
        assert np.array_equal(row, truth["labels"][index[rel]]), rel
    assert (root / "Flickr" / "beach" / "0001_1007.jpg").is_file()
    assert "beach/0001_1007.jpg" in seen  # from C:\ImageData\Flickr\beach\0001_1007.jpg
    inv = ds.inventory()
    assert (inv["images"], inv["labelled"], inv["missing"], inv["classes"]) == (150, 148, 1, 81)


def test_nuswide81_dsrh_and_standard_sizes(nuswide_tree):
    root, _ = nuswide_tree
    dsrh = nus("nuswide81", root, n_query=10)
    assert dsrh.split_sizes() == {"train": 133, "query": 10, "database": 137, "val": 4}
    std = nus("nuswide81", root, protocol="standard", n_query=10, n_train=30)
    sets = {k: set(std.get(k).rel_paths) for k in std.splits()}
    assert {k: len(v) for k, v in sets.items()} == {"train": 30, "query": 10, "database": 137,
                                                    "val": 4}
    assert sets["train"] <= sets["database"] and not sets["query"] & sets["database"]


def test_nuswide21_keeps_the_21_most_frequent_in_concept_order(nuswide_tree):
    root, truth = nuswide_tree
    ds = nus("nuswide21", root, per_concept_query=1, per_concept_train=2)
    assert ds.class_names == [NUS_CONCEPTS[c] for c in NUS_FREQUENT]
    seen = union(ds)
    index = {r: i for i, r in enumerate(truth["rels"])}
    assert truth["rels"][13] not in seen  # only a rare concept: dropped
    for rel, row in seen.items():
        assert np.array_equal(row, truth["labels"][index[rel], NUS_FREQUENT])
    inv = ds.inventory()
    assert inv["labelled"] == 147 and inv["classes"] == 21
    assert inv["published"]["labelled"] == 195834


def test_nuswide21_per_concept_protocol(nuswide_tree):
    root, _ = nuswide_tree
    ds = nus("nuswide21", root, per_concept_query=2, per_concept_train=3)
    sets = {k: set(ds.get(k).rel_paths) for k in ds.splits()}
    assert len(sets["query"]) == 42 and len(sets["train"]) == 63 and len(sets["val"]) == 4
    assert len(sets["database"]) == 146 - 42  # usable (147 labelled - 1 missing) minus queries
    assert not sets["query"] & sets["database"]
    assert sets["train"] <= sets["database"] and sets["val"] <= sets["database"]
    assert not sets["train"] & sets["val"]
    q = ds.get("query").labels
    t = ds.get("train").labels
    assert (q.sum(axis=0) >= 2).all() and (t.sum(axis=0) >= 3).all()
    again = nus("nuswide21", root, per_concept_query=2, per_concept_train=3,
                cache_dir=root.parent / "other-cache")
    assert again.get("query").rel_paths == ds.get("query").rel_paths


def test_nuswide21_too_few_images_per_concept(nuswide_tree, caplog):
    root, _ = nuswide_tree
    ds = nus("nuswide21", root)  # 100 queries and 500 training images per concept
    with pytest.raises(HashbenchError) as err:
        ds.get("query")
    msg = str(err.value)
    assert "100 query images with concept 'concept30'" in msg and "per_concept_query" in msg
    scaled = nus("nuswide21", root, scale_down=True)
    with caplog.at_level(logging.WARNING, logger="hashbench.datasets"):
        sizes = scaled.split_sizes()
    assert sizes["query"] > 0 and sizes["database"] > 0
    assert any("scale_down" in r.getMessage() for r in caplog.records)


def test_label_file_of_the_wrong_length_names_both_counts(nuswide_tree):
    root, _ = nuswide_tree
    path = root / "Groundtruth" / "AllLabels" / "Labels_concept07.txt"
    path.write_text("\n".join(["0"] * 149) + "\n")
    with pytest.raises(HashbenchError) as err:
        nus("nuswide81", root)
    msg = str(err.value)
    assert "Labels_concept07.txt" in msg and "149" in msg and "150" in msg and "\n" not in msg


def test_label_value_other_than_0_1_names_file_and_line(nuswide_tree):
    root, _ = nuswide_tree
    path = root / "Groundtruth" / "AllLabels" / "Labels_concept02.txt"
    lines = path.read_text().splitlines()
    lines[4] = "2"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(HashbenchError, match=r"Labels_concept02.txt line 5"):
        nus("nuswide81", root)


def test_missing_label_file_and_concept_list(nuswide_tree):
    root, _ = nuswide_tree
    (root / "Groundtruth" / "AllLabels" / "Labels_concept50.txt").unlink()
    with pytest.raises(HashbenchError, match="Labels_concept50.txt"):
        nus("nuswide21", root)
    (root / "ConceptsList" / "Concepts81.txt").unlink()
    with pytest.raises(HashbenchError) as err:
        nus("nuswide81", root)
    assert "ConceptsList/Concepts81.txt" in str(err.value)


def test_concept_list_at_the_top_level(tmp_path):
    root = tmp_path / "nus"
    make_nuswide(root, n=60, concepts_at_top=True)
    assert nus("nuswide81", root, n_query=5).class_names == NUS_CONCEPTS


def test_wrong_data_root_names_the_image_list(tmp_path):
    with pytest.raises(HashbenchError) as err:
        nus("nuswide21", tmp_path)
    assert str(tmp_path / "ImageList" / "Imagelist.txt") in str(err.value)


def test_missing_image_folder_is_named(nuswide_tree):
    root, _ = nuswide_tree
    with pytest.raises(HashbenchError, match="image_dir"):
        nus("nuswide81", root, image_dir=root / "images")


def test_missing_and_corrupt_images_are_counted_and_refused_when_strict(nuswide_tree):
    root, truth = nuswide_tree
    ds = nus("nuswide81", root, n_query=10)
    ds.scan(workers=0)
    inv = ds.inventory()
    assert inv["missing"] == 1 and inv["corrupt"] == 1
    assert inv["missing_files"] == [truth["rels"][6]]
    assert list(inv["corrupt_files"]) == [truth["rels"][8]]
    with pytest.raises(HashbenchError, match="strict"):
        nus("nuswide81", root, n_query=10, strict=True)


def test_both_nuswide_datasets_share_one_prepared_cache(nuswide_tree):
    root, _ = nuswide_tree
    big = nus("nuswide81", root, n_query=10)
    assert big.prepare(workers=0)["images"] == 147
    small = nus("nuswide21", root, per_concept_query=1, per_concept_train=2)
    split = small.get("train")
    assert small.cache_dir == big.cache_dir and (split.rows >= 0).all()
    assert small.report_file != big.report_file


def test_an_image_list_entry_climbing_out_of_the_image_folder_is_refused(nuswide_tree, capsys):
    """Only the last two components of a line count, so `x\\..\\name.jpg` reads as ../name.jpg."""
    from hashbench.cli import main

    root, truth = nuswide_tree
    list_file = root / "ImageList" / "Imagelist.txt"
    lines = list_file.read_bytes().split(b"\r\n")
    lines[2] = b"C:\\ImageData\\Flickr\\zoo\\..\\0002_1014.jpg"
    list_file.write_bytes(b"\r\n".join(lines))
    words = ["data", "verify", "dataset=nuswide81", f"data_root={root}", "n_query=10", "n_val=5",
             "image_size=16", "decode=false", "--json"]
    assert main(words) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert (f"nuswide81: 1 image path leads outside the image root {root / 'Flickr'} (first: "
            f"'../0002_1014.jpg' at {list_file} line 3)") in err
    assert main(words[:-1] + ["allow_outside_root=true", "--json"]) == 0
    assert '"missing": 2' in capsys.readouterr().out  # read where it leads: Flickr/../0002_1014.jpg


def test_nuswide81_released_protocol_keeps_unlabelled_images_in_the_database(nuswide_tree):
    """DSRH's released evaluation: database = training set with the unlabelled images; queries =
    the labelled among the candidates; val from the rest; deterministic under the seed."""
    root, truth = nuswide_tree
    ds = nus("nuswide81", root, protocol="released", n_database=100, n_query_candidates=30)
    index = {r: i for i, r in enumerate(truth["rels"])}
    sets = {k: {index[r] for r in ds.get(k).rel_paths} for k in ds.splits()}
    usable = set(range(150)) - {6}  # the missing one; the unlabelled images (4, 40) stay
    assert set(ds.pool.tolist()) == usable
    assert sets["train"] == sets["database"] and len(sets["database"]) == 100
    # the rule, written out: a seeded permutation of the usable images in list order
    order = np.random.default_rng(0).permutation(sorted(usable))
    labelled = truth["labels"].any(1)
    assert sets["database"] == set(order[:100].tolist())
    assert sets["query"] == {i for i in order[100:130].tolist() if labelled[i]}
    assert sets["val"] == set([i for i in order[130:].tolist() if labelled[i]][:4])
    # the permutation is seeded: the same splits again, others under another seed
    again = nus("nuswide81", root, protocol="released", n_database=100, n_query_candidates=30)
    assert [again.get(k).rel_paths for k in again.splits()] == [ds.get(k).rel_paths for k in ds.splits()]
    other = nus("nuswide81", root, protocol="released", n_database=100, n_query_candidates=30, seed=1)
    assert other.get("query").rel_paths != ds.get("query").rel_paths


def test_nuswide81_released_protocol_counts_hold_unlabelled_in_database_and_out_of_queries(tmp_path):
    """A tree where many images are unlabelled: some reach the database, none the queries."""
    root = tmp_path / "nus"
    truth = make_nuswide(root, n=120, unlabelled=tuple(range(0, 120, 4)), missing=(), corrupt=())
    ds = nus("nuswide81", root, protocol="released", n_database=80, n_query_candidates=24, n_val=0)
    index = {r: i for i, r in enumerate(truth["rels"])}
    db = [index[r] for r in ds.get("database").rel_paths]
    query = [index[r] for r in ds.get("query").rel_paths]
    n_unlabelled_db = sum(not truth["labels"][i].any() for i in db)
    assert len(db) == 80 and n_unlabelled_db > 10  # about a quarter of 80
    candidates_left = set(range(120)) - set(db)
    assert len(query) < 24 and all(truth["labels"][i].any() for i in query)
    assert set(query) <= candidates_left
    assert ds.splits() == ("train", "query", "database")
    with pytest.raises(HashbenchError, match="asks for 200 database and 24 query-candidate images"):
        nus("nuswide81", root, protocol="released", n_database=200, n_query_candidates=24, n_val=0).get("query")
