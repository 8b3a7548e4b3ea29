"""The leaf recipes in configs/: each composes and is checked like a user's config; the ones that
restate a dataset preset restate it exactly."""
from pathlib import Path

import pytest

from hashbench.config import CONFIG_ROOT, build_run_config, load_file, parse_words

RECIPES = sorted(p for p in Path(CONFIG_ROOT).glob("*.py") if p.name not in ("default.py", "__init__.py"))


def test_the_recipes_are_there():
    names = {p.stem for p in RECIPES}
    assert {"dsrh-as-released_alexnet_sgd-50e_nuswide81-released", "dpsh_alexnet_sgd-50e_cifar10-p1",
            "hashnet_resnet50_sgd-50e_coco", "dsrh_test-resnet_adamw-20e_multidigits"} <= names
    for p in RECIPES:  # {method}_{backbone}_{schedule}_{data}
        assert len(p.stem.split("_")) == 4, p.stem


@pytest.mark.parametrize("recipe", RECIPES, ids=lambda p: p.stem)
def test_each_recipe_composes(recipe, tmp_path):
    on_disk = load_file(recipe)["dataset"]["type"] != "multidigits"  # the embedded data has no data_root
    run = build_run_config(parse_words([f"config={recipe}", *([f"data_root={tmp_path}"] if on_disk else [])]))
    assert run.methods and all(m["eval"]["tables"] for m in run.methods.values())


@pytest.mark.parametrize("recipe, preset", [("dpsh_alexnet_sgd-50e_cifar10-p1", "cifar10"),
                                            ("hashnet_resnet50_sgd-50e_coco", "coco")])
def test_a_recipe_restates_its_dataset_preset_exactly(recipe, preset):
    mine, theirs = load_file(CONFIG_ROOT / f"{recipe}.py"), load_file(CONFIG_ROOT / "datasets" / f"{preset}.py")
    assert mine["dataset"] == theirs["dataset"]
    assert {k: mine["eval"][k] for k in theirs["eval"]} == theirs["eval"]
