"""``hashbench data verify`` / ``prepare`` through the argparse entry point."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pytest

from hashbench import data_cli
from hashbench.cli import main
from hashbench.registry import DATASETS, entries

SMALL = ["n_query=10", "n_val=5", "image_size=16"]


def test_all_four_datasets_are_registered():
    assert {"mirflickr25k", "nuswide81", "nuswide21", "listfile", "features"} <= set(entries(DATASETS))


def test_add_parser_sets_a_func():
    parser = argparse.ArgumentParser(prog="hashbench")
    data_cli.add_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["data", "verify", "dataset=mirflickr25k", "data_root=/x", "--json"])
    assert args.action == "verify" and args.json and callable(args.func)
    assert args.words == ["dataset=mirflickr25k", "data_root=/x"]


def test_verify_json_counts(mirflickr_tree, capsys):
    root, _ = mirflickr_tree
    status = main(["data", "verify", "dataset=mirflickr25k", f"data_root={root}", *SMALL,
                            "--json"])
    out = capsys.readouterr().out
    report = json.loads(out)
    assert status == 0 and len(out.strip().splitlines()) == 1
    assert {k: report[k] for k in ("dataset", "images", "labelled", "classes", "missing", "corrupt")} \
        == {"dataset": "mirflickr25k", "images": 59, "labelled": 57, "classes": 24, "missing": 1,
            "corrupt": 1}
    assert report["splits"] == {"train": 41, "query": 10, "database": 46, "val": 5}
    assert report["published"]["labelled"] == 24581
    assert set(report["split_files"]["files"]) == {"train", "query", "database", "val"}


def test_verify_text_summary(nuswide_tree, capsys):
    root, _ = nuswide_tree
    status = main(["data", "verify", "dataset=nuswide21", f"data_root={root}",
                            "per_concept_query=1", "per_concept_train=2", "n_val=0"])
    out = capsys.readouterr().out
    assert status == 0
    assert "images     150  (published: 269648)" in out
    assert "missing    1" in out and "corrupt    1" in out
    assert "protocol standard: train 42, query 21, database 124" in out


def test_verify_reports_why_splits_cannot_be_formed(mirflickr_tree, capsys):
    root, _ = mirflickr_tree
    status = main(["data", "verify", "dataset=mirflickr25k", f"data_root={root}",
                            "decode=false", "--json"])
    report = json.loads(capsys.readouterr().out)
    assert status == 1 and "2000 query" in report["splits"]["error"]
    assert report["corrupt"] == 0 and report["decoded"] is False


def test_verify_strict_fails_on_bad_images(mirflickr_tree, capsys):
    root, _ = mirflickr_tree
    status = main(["data", "verify", "dataset=mirflickr25k", f"data_root={root}", *SMALL,
                            "strict=true", "--json"])
    assert status == 1 and json.loads(capsys.readouterr().out)["missing"] == 1


def test_wrong_data_root_is_one_line_and_exit_2(tmp_path, capsys):
    status = main(["data", "verify", "dataset=nuswide81", f"data_root={tmp_path}"])
    err = capsys.readouterr().err.strip()
    assert status == 2 and len(err.splitlines()) == 1
    assert err.startswith("hashbench: error: nuswide81: expected the image list")
    assert str(tmp_path / "ImageList" / "Imagelist.txt") in err


def test_bad_words(capsys):
    assert main(["data", "verify", "mirflickr25k"]) == 2
    assert "key=value" in capsys.readouterr().err
    assert main(["data", "verify", "dataset=nope", "data_root=/x"]) == 2
    assert "unknown dataset 'nope'" in capsys.readouterr().err


def test_prepare_then_training_reads_the_cache(mirflickr_tree, capsys):
    from hashbench.registry import build
    root, _ = mirflickr_tree
    status = main(["data", "prepare", "dataset=mirflickr25k", f"data_root={root}",
                            *SMALL, "workers=0", "--json"])
    result = json.loads(capsys.readouterr().out)
    assert status == 0 and result["images"] == 57 and result["corrupt"] == 1
    ds = build(DATASETS, dict(type="mirflickr25k", data_root=str(root), n_query=10, n_val=5,
                              image_size=16))
    split = ds.get("train")
    assert split.cache_file is not None and (split.rows >= 0).all()
    assert "mirflickr/im7.jpg" not in split.rel_paths  # corrupt: known from the prepare pass
    x, _ = split[0]
    assert x.dtype.is_floating_point is False and tuple(x.shape) == (3, 16, 16)


def test_prepare_refuses_features(tmp_path, capsys):
    path = tmp_path / "f.npz"
    z = {f"{s}_{k}": (np.zeros((3, 2)) if k == "features" else np.eye(3, dtype=np.uint8))
         for s in ("train", "query", "database") for k in ("features", "labels")}
    np.savez(path, **z)
    assert main(["data", "verify", "dataset=features", f"data_root={path}", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["splits"] == {"train": 3, "query": 3, "database": 3} and report["classes"] == 3
    assert main(["data", "prepare", "dataset=features", f"data_root={path}"]) == 2
    assert "nothing to prepare" in capsys.readouterr().err


def test_time_reads_an_epoch_with_and_without_the_cache(mirflickr_tree, capsys):
    root, _ = mirflickr_tree
    words = ["dataset=mirflickr25k", f"data_root={root}", *SMALL, "batch_size=8"]
    assert main(["data", "time", *words, "--json"]) == 0
    first = json.loads(capsys.readouterr().out)
    assert first["images"] == 42 and first["decode"]["seconds"] > 0 and first["cache"] is None
    main(["data", "prepare", *words, "workers=0"])
    capsys.readouterr()
    assert main(["data", "time", *words]) == 0
    assert "prepared cache" in capsys.readouterr().out


def test_time_leaves_the_process_thread_count_alone(tmp_path):
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        assert main(["data", "time", "dataset=multidigits", f"cache_dir={tmp_path}", "n_train=32", "n_query=4",
                     "n_database=8", "threads=1"]) == 0
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


def test_a_missing_required_parameter_is_one_line_naming_it(capsys):
    for action in ("verify", "prepare", "time"):
        for name in ("listfile", "mirflickr25k", "nuswide81", "nuswide21", "features"):
            assert main(["data", action, f"dataset={name}"]) == 2
            err = capsys.readouterr().err.strip()
            assert len(err.splitlines()) == 1 and err.startswith("hashbench: error:")
            assert "needs data_root" in err and "Traceback" not in err


@pytest.mark.parametrize("split_json", ["{", "[]", "null", '{"record": {}, "files": 7}'])
def test_damaged_files_in_the_cache_dir_do_not_stop_verify(mirflickr_tree, capsys, split_json):
    """split.json, scan.tsv and the prepared manifest are hashbench's own files, but a full disk
    or a hand edit can leave anything in them: they are then ignored and written again."""
    root, _ = mirflickr_tree
    words = ["dataset=mirflickr25k", f"data_root={root}", *SMALL, "--json"]
    assert main(["data", "prepare", *words[:-1], "workers=0"]) == 0
    assert main(["data", "verify", *words]) == 0
    before = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    cache = Path(before["split_files"]["dir"]).parents[1]
    for f in cache.rglob("split.json"):
        f.write_text(split_json)
    with open(cache / "scan.tsv", "ab") as f:
        f.write(b"\xff\xfe garbage\tnot-a-size\t\x00\n\t\t\t\nim1.jpg\t12")
    assert (cache / "images-16.json").is_file() and (cache / "scan.tsv").is_file()
    (cache / "images-16.json").write_text("null")
    assert main(["data", "verify", *words]) == 0
    after = json.loads(capsys.readouterr().out)
    assert after["splits"] == before["splits"] and after["corrupt"] == before["corrupt"] == 1
    assert after["split_files"]["files"]["train"]["sha256"] == before["split_files"]["files"]["train"]["sha256"]
