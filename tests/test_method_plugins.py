"""The method contract proven by plugins defined here (tests/plugins/), one per family: a memory bank
over the training set, an explicit weighted-triplet sampler, learnable class centres with a
classifier head, and asymmetric database codes updated once per epoch. Each runs through
`hashbench run ... plugins=...` on the embedded data and resumes after an interruption with the
same result as an uninterrupted run (the two-process DDP check is in test_distributed.py).
None of them needs anything of hashbench beyond the declared hooks."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from hashbench.cli import main

PLUGINS = Path(__file__).parent / "plugins"
FAMILIES = {"plugin_bank": "bank_plugin.py", "plugin_tuples": "tuples_plugin.py",
            "plugin_centres": "centres_plugin.py", "plugin_asym": "asym_plugin.py"}
TINY = ["bits=8", "dataset.n_train=48", "dataset.n_query=8", "dataset.n_database=24", "train.batch_size=16"]

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("HASHBENCH_CACHE", str(tmp_path / "cache"))


def _record_and_codes(out: Path):
    (line,) = (out / "results.jsonl").read_text().splitlines()
    rec = json.loads(line)
    with np.load(out / rec["codes"]) as z:
        return rec, {k: z[k] for k in ("query", "database")}


@pytest.mark.parametrize("name", sorted(FAMILIES))
def test_a_plugin_method_runs_through_the_cli_and_resumes_after_an_interruption(name, tmp_path, request):
    words = [f"methods={name}", f"plugins={PLUGINS / FAMILIES[name]}", "epochs=3", *TINY]
    assert main(["run", f"out={tmp_path / 'clean'}", *words]) == 0
    clean, clean_codes = _record_and_codes(tmp_path / "clean")
    assert clean["method"] == name and len(clean["train_log"]) == 3
    assert all(np.isfinite(log["loss"]) for log in clean["train_log"])
    assert 0 < clean["metrics"]["map"] <= 1

    stop_interrupting = request.getfixturevalue("interrupt_after_first_epoch")
    out = tmp_path / "interrupted"
    assert main(["run", f"out={out}", *words]) == 130
    assert not (out / "results.jsonl").exists() and len(list((out / "checkpoints").glob("*.pt"))) == 1
    stop_interrupting()
    assert main(["run", f"out={out}", *words]) == 0
    resumed, resumed_codes = _record_and_codes(out)
    assert resumed["metrics"] == clean["metrics"]  # as if never interrupted: the method's state came back
    assert [l["loss"] for l in resumed["train_log"]] == [l["loss"] for l in clean["train_log"]]
    for k in ("query", "database"):
        np.testing.assert_array_equal(resumed_codes[k], clean_codes[k])


def _tiny_split(tmp_path):
    from hashbench.registry import DATASETS, build

    return build(DATASETS, dict(type="multidigits", n_train=48, n_query=8, n_database=24,
                                cache_dir=str(tmp_path / "md"))).get("train")


def _train(name, split, epochs=2):
    from hashbench.model import DeepHasher
    from hashbench.plugins import import_plugin
    from hashbench.registry import BACKBONES, METHODS, build
    from hashbench.train import train_deep

    import_plugin(str(PLUGINS / FAMILIES[name]))
    torch.manual_seed(0)
    method = build(METHODS, dict(type=name), n_bits=8)
    model = DeepHasher.for_method(build(BACKBONES, dict(type="timm", name="test_resnet")), method)
    logs = train_deep(method, model, split, dict(epochs=epochs, batch_size=16, lr=1e-3), torch.device("cpu"), 0)
    return method, model, logs


def test_the_bank_holds_the_last_output_of_every_training_item(tmp_path):
    split = _tiny_split(tmp_path)
    method, _, logs = _train("plugin_bank", split, epochs=1)
    assert bool(method.loss.seen.all()) and method.loss.bank.abs().sum() > 0  # every row written in an epoch
    assert logs[0]["pairs"] > 0


def test_the_sampler_tuples_reach_the_loss(tmp_path):
    split = _tiny_split(tmp_path)
    method, _, logs = _train("plugin_tuples", split, epochs=1)
    # 48 anchors in 3 batches of 16, a quarter left out at random: well under 16 tuples per batch
    assert 0 < logs[0]["tuples"] < 16


def test_centres_and_classifier_are_trained_at_their_own_rates(tmp_path, monkeypatch):
    import hashbench.train as train_mod

    seen = {}
    real = train_mod.param_groups

    def spy(named, lr, weight_decay, lr_mult):
        named = list(named)
        groups = real(named, lr, weight_decay, lr_mult)
        ids = {id(p): n for n, p in named}
        seen.update({ids[id(p)]: g["lr"] for g in groups for p in g["params"]})
        return groups

    monkeypatch.setattr(train_mod, "param_groups", spy)
    split = _tiny_split(tmp_path)
    start = torch.randn(10, 8, generator=torch.Generator().manual_seed(0))  # the plugin's initial centres
    method, _, _ = _train("plugin_centres", split, epochs=1)
    assert seen["method.loss.classifier.weight"] == pytest.approx(5e-3) and seen["method.loss.centres"] == 1e-3
    assert not torch.allclose(method.loss.centres.detach(), start)  # the optimiser moved them


def test_asymmetric_codes_update_once_per_epoch_and_encode_training_items(tmp_path):
    from hashbench.encode import encode_deep

    split = _tiny_split(tmp_path)
    method, model, _ = _train("plugin_asym", split, epochs=2)
    assert method.updates == 2
    V = method.loss.V
    assert set(V.unique().tolist()) == {-1.0, 1.0}
    network = lambda s: encode_deep(model, s, torch.device("cpu"))  # noqa: E731
    # a database that is the training set: its codes are the learned V, not the network's
    got = method.encode("database", split, network)
    np.testing.assert_array_equal(got, (V.numpy() > 0).astype(np.uint8))
    np.testing.assert_array_equal(method.encode("query", split, network), network(split))
