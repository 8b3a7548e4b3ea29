"""The published list-file presets (configs/datasets/NAME.py over ``listfile``): every one runs
through ``hashbench run``, is known to ``hashbench data verify`` and ``hashbench list datasets``, and
refuses lists of another benchmark in one line."""
import json

import pytest
from dataset_trees import make_list_tree

from hashbench.cli import main
from hashbench.config import CONFIG_ROOT, load_file
from hashbench.registry import DATASETS, entries

PRESETS = sorted(p.stem for p in (CONFIG_ROOT / "datasets").glob("*.py")
                 if not p.stem.startswith("_") and p.stem not in entries(DATASETS))


def preset(name):
    cfg = load_file(CONFIG_ROOT / "datasets" / f"{name}.py")
    return cfg["dataset"], cfg["eval"]


def test_the_published_presets_are_there():
    assert {"coco", "imagenet100", "nuswide21_lists", "mirflickr25k_lists"} <= set(PRESETS)
    widths = {name: preset(name)[0]["n_classes"] for name in PRESETS}
    assert widths == {"coco": 80, "imagenet100": 100, "nuswide21_lists": 21, "mirflickr25k_lists": 38}


@pytest.mark.parametrize("name", PRESETS)
def test_a_preset_runs_and_verifies_through_the_cli(name, tmp_path, capsys):
    block, ev = preset(name)
    lists = make_list_tree(tmp_path / "d", block["n_classes"], single_label=block.get("single_label", False))
    out = tmp_path / "out"
    assert main(["run", f"dataset={name}", f"data_root={tmp_path / 'd'}", "dataset.image_size=16", "methods=lsh",
                 "bits=8", "classic.features=pixels", f"out={out}"]) == 0
    rec = json.loads((out / "results.jsonl").read_text())
    assert rec["config"]["dataset"]["n_classes"] == block["n_classes"]
    assert rec["config"]["eval"]["tables"] == ev["tables"] and set(ev["metrics"]) <= set(rec["metrics"])
    capsys.readouterr()

    assert main(["data", "verify", f"dataset={name}", f"data_root={tmp_path / 'd'}", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["preset"] == name and summary["dataset"] == "listfile"
    assert summary["classes"] == block["n_classes"] and summary["missing"] == summary["corrupt"] == 0
    assert summary["splits"] == {split: len(rows) for split, rows in lists.items()}

    assert main(["data", "verify", f"dataset={name}", f"data_root={tmp_path / 'd'}"]) == 0
    assert f"dataset    listfile, preset {name}  (" in capsys.readouterr().out


@pytest.mark.parametrize("name", PRESETS)
def test_lists_of_another_width_are_one_line_before_any_work(name, tmp_path, capsys):
    width = preset(name)[0]["n_classes"]
    make_list_tree(tmp_path / "d", width + 1)
    for words in (["run", f"dataset={name}", f"data_root={tmp_path / 'd'}", "methods=lsh",
                   f"out={tmp_path / 'out'}"],
                  ["data", "verify", f"dataset={name}", f"data_root={tmp_path / 'd'}"]):
        assert main(words) == 2
        err = capsys.readouterr().err
        assert f"has {width + 1} label columns; this benchmark has {width}" in err and err.count("\n") == 1
    assert not (tmp_path / "out" / "results.jsonl").exists()


def test_a_word_overrides_the_preset_for_data_verify(tmp_path, capsys):
    """``n_classes=`` on the command line wins over the preset's, as ``dataset.n_classes=`` does for run."""
    make_list_tree(tmp_path / "d", 7)
    assert main(["data", "verify", "dataset=coco", f"data_root={tmp_path / 'd'}", "n_classes=7", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["classes"] == 7


def test_hashbench_list_datasets_names_every_preset(capsys):
    assert main(["list", "datasets"]) == 0
    lines = capsys.readouterr().out.splitlines()
    start = next(i for i, ln in enumerate(lines) if ln.startswith("configured"))
    listed = {ln.split()[0] for ln in lines[start + 1:]}
    assert listed == set(PRESETS)
    registered = {ln.split()[0] for ln in lines[:start]}
    assert registered == set(entries(DATASETS))


@pytest.mark.parametrize("command", [["run", "methods=lsh"], ["data", "verify"]])
def test_a_preset_without_data_root_is_named_in_the_one_line(command, capsys):
    assert main([*command, "dataset=coco"]) == 2
    err = capsys.readouterr().err
    assert "dataset 'coco' (listfile) needs" in err and "data_root" in err and err.count("\n") == 1
