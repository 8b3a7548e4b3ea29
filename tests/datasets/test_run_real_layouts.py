"""Every real dataset name runs through `hashbench run` and `hashbench data verify` on a small tree,
and so does every recipe in configs/ (sizes shrunk to the tree, weights random but from a file)."""
import json
from pathlib import Path

import torch

import pytest

from dataset_trees import (cifar_batches, make_features_npz, make_list_tree, make_mirflickr, make_nuswide,
                           write_cifar_bin, write_jpeg, write_lines)
from hashbench.cli import main

COMMON = ["bits=8", "epochs=1", "dataset.image_size=32", "dataset.n_val=0"]


def run(tmp_path, *words):
    out = tmp_path / "out"
    assert main(["run", f"out={out}", *COMMON, *words]) == 0
    return [json.loads(l) for l in (out / "results.jsonl").read_text().splitlines()]


def test_mirflickr25k(tmp_path):
    make_mirflickr(tmp_path / "mf", n=60)
    recs = run(tmp_path, "dataset=mirflickr25k", f"data_root={tmp_path / 'mf'}", "dataset.n_query=8",
               "methods=dsrh,itq")
    assert [r["method"] for r in recs] == ["dsrh", "itq"] and all(r["dataset"] == "mirflickr25k" for r in recs)
    assert all(0 <= r["metrics"]["map"] <= 1 for r in recs)


def test_nuswide21_and_81(tmp_path):
    make_nuswide(tmp_path / "nus", n=150)
    recs = run(tmp_path, "dataset=nuswide21", f"data_root={tmp_path / 'nus'}", "dataset.per_concept_query=1",
               "dataset.per_concept_train=2", "methods=lsh")
    assert recs[0]["dataset"] == "nuswide21"
    recs = run(tmp_path, "dataset=nuswide81", f"data_root={tmp_path / 'nus'}", "dataset.n_query=10",
               "methods=random")
    assert recs[-1]["dataset"] == "nuswide81"


def test_listfile_and_features(tmp_path):
    root = tmp_path / "lists"
    rows = []
    for i in range(30):
        write_jpeg(root / "img" / f"{i:03d}.jpg", seed=i)
        rows.append(f"img/{i:03d}.jpg {i % 2} {int(i % 3 == 0)} 1")
    write_lines(root / "train.txt", rows[:20])
    write_lines(root / "test.txt", rows[20:])
    write_lines(root / "database.txt", rows[:20])
    assert run(tmp_path, "dataset=listfile", f"data_root={root}", "methods=pcah")[0]["dataset"] == "listfile"

    make_features_npz(tmp_path / "f.npz", dict(train=40, query=10, database=30), dim=12, classes=4, p_label=0.4)
    out = tmp_path / "fout"
    assert main(["run", f"out={out}", "bits=8", "dataset=features", f"data_root={tmp_path / 'f.npz'}",
                 "methods=itq"]) == 0
    assert json.loads((out / "results.jsonl").read_text())["dataset"] == "features"


@pytest.mark.parametrize("name", ["mirflickr25k", "nuswide81"])
def test_data_verify_through_the_main_cli(tmp_path, capsys, name):
    maker = make_mirflickr if name == "mirflickr25k" else make_nuswide
    maker(tmp_path / "tree")
    assert main(["data", "verify", f"dataset={name}", f"data_root={tmp_path / 'tree'}", "n_query=5", "n_val=0",
                 "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["dataset"] == name and summary["missing"] == 1 and summary["corrupt"] == 1


def test_wrong_data_root_is_one_line(tmp_path, capsys):
    assert main(["run", "dataset=mirflickr25k", f"data_root={tmp_path / 'nowhere'}", "methods=lsh"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("hashbench: error:") and str(tmp_path / "nowhere") in err and err.count("\n") == 1


def test_deep_method_on_features_is_refused_in_one_line(tmp_path, capsys):
    make_features_npz(tmp_path / "f.npz", dict(train=20, query=5, database=10), dim=6, classes=3, p_label=0.5)
    assert main(["run", f"out={tmp_path / 'o'}", "bits=8", "dataset=features", f"data_root={tmp_path / 'f.npz'}",
                 "methods=dsrh"]) == 2
    err = capsys.readouterr().err
    assert "dsrh is a deep method" in err and "use a classic method" in err and err.count("\n") == 1


def test_the_dsrh_release_recipe_runs_on_nuswide_with_alexnet(tmp_path):
    """The release recipe end to end: released protocol, torchvision AlexNet from a weights file,
    the released sampler's rows, balance scaling, head and learning rates; sizes shrunk to a tree."""
    import torch
    import torchvision

    make_nuswide(tmp_path / "nus", n=90)
    weights = tmp_path / "alexnet.pth"
    torch.save(torchvision.models.alexnet(weights=None).state_dict(), weights)
    out = tmp_path / "out"
    recipe = Path(__file__).resolve().parents[2] / "configs" / "dsrh-as-released_alexnet_sgd-50e_nuswide81-released.py"
    words = ["run", f"config={recipe}", f"out={out}",
             f"data_root={tmp_path / 'nus'}", f"backbone.checkpoint={weights}", "bits=16", "epochs=1",
             "dataset.image_size=16", "dataset.n_database=40", "dataset.n_query_candidates=12", "dataset.n_val=0",
             "method.balance_count=1", "train.batch_size=32", "train.workers=0"]
    assert main(words) == 0
    rec = json.loads((out / "results.jsonl").read_text())
    method = rec["config"]["method"]
    assert (method["sampler"], method["self_pair"], method["rows"], method["balance"]) == ("released", True, True,
                                                                                          "released")
    assert rec["config"]["backbone"]["type"] == "torchvision" and rec["config"]["dataset"]["protocol"] == "released"
    assert rec["config"]["train"]["augment"] == "flip"
    assert rec["train_log"][0]["triplet"] > 0 and 0 <= rec["metrics"]["map"] <= 1


RECIPES = Path(__file__).resolve().parents[2] / "configs"


def test_the_dpsh_cifar10_recipe_runs_on_cifar_batches_with_alexnet(tmp_path):
    """The DPSH CIFAR-10 p1 recipe end to end: torchvision AlexNet from a weights file, p1's
    per-class queries and training images, mAP over the whole database, every code length."""
    import torchvision

    write_cifar_bin(tmp_path / "cifar", cifar_batches(per_batch=20))
    weights = tmp_path / "alexnet.pth"
    torch.save(torchvision.models.alexnet(weights=None).state_dict(), weights)
    out = tmp_path / "out"
    assert main(["run", f"config={RECIPES / 'dpsh_alexnet_sgd-50e_cifar10-p1.py'}", f"out={out}",
                 f"data_root={tmp_path / 'cifar'}", f"backbone.checkpoint={weights}", "epochs=1",
                 "dataset.per_concept_query=1", "dataset.per_concept_train=2", "train.batch_size=10",
                 "train.workers=0"]) == 0
    recs = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert [r["bits"] for r in recs] == [12, 24, 32, 48] and {r["method"] for r in recs} == {"dpsh"}
    rec = recs[0]
    assert rec["config"]["dataset"]["protocol"] == "p1" and rec["config"]["backbone"]["type"] == "torchvision"
    assert rec["config"]["backbone"]["input_size"] == [224, 224]
    assert rec["config"]["train"]["optimizer"] == "sgd" and rec["config"]["eval"]["tables"] == ["map", "p@h2"]
    assert rec["eval_info"]["n_queries"] == 10 and rec["eval_info"]["n_database"] == 110  # 120 images less p1's queries
    assert all(0 <= r["metrics"]["map"] <= 1 for r in recs)


def test_the_hashnet_coco_recipe_runs_on_published_lists_with_resnet50(tmp_path):
    """The HashNet COCO recipe end to end: the coco preset's prefix search and 80 columns, timm's
    ResNet-50 from a weights file at its pretrained input size, mAP@5000."""
    import timm

    make_list_tree(tmp_path / "coco", 80, n=(8, 3, 5))
    weights = tmp_path / "resnet50.pth"
    torch.save(timm.create_model("resnet50").state_dict(), weights)
    out = tmp_path / "out"
    assert main(["run", f"config={RECIPES / 'hashnet_resnet50_sgd-50e_coco.py'}", f"out={out}",
                 f"data_root={tmp_path / 'coco'}", f"backbone.checkpoint={weights}", "epochs=1", "bits=16",
                 "dataset.image_size=16", "train.batch_size=8", "train.workers=0"]) == 0
    rec = json.loads((out / "results.jsonl").read_text())
    assert rec["method"] == "hashnet" and rec["config"]["backbone"]["name"] == "resnet50"
    assert rec["config"]["backbone"]["input_size"] == [224, 224] and rec["config"]["dataset"]["n_classes"] == 80
    assert rec["eval_info"]["n_queries"] == 3 and rec["eval_info"]["n_database"] == 13
    assert rec["train_log"][0]["loss"] > 0 and 0 <= rec["metrics"]["map@5000"] <= 1
