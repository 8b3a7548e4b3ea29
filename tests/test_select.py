"""Model selection (train.select): the best val epoch's weights are kept, the queries never seen."""
import json

import numpy as np
import torch

from hashbench.cli import main
from hashbench.model import DeepHasher
from hashbench.registry import BACKBONES, DATASETS, METHODS, build
from hashbench.train import train_deep

TINY = ["dataset.n_train=64", "dataset.n_query=16", "dataset.n_database=48", "dataset.n_val=16", "device=cpu",
        "bits=8"]
CFG = dict(epochs=3, batch_size=16, optimizer="adamw", lr=1e-3)


def setup(tmp_path):
    ds = build(DATASETS, dict(type="multidigits", n_train=48, n_query=8, n_database=16, cache_dir=str(tmp_path)))
    method = build(METHODS, dict(type="dsrh"), n_bits=8)
    torch.manual_seed(0)
    model = DeepHasher(build(BACKBONES, dict(type="timm", name="test_resnet")), 8)
    return ds.get("train"), method, model


def weights(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def test_the_best_val_epoch_is_restored_and_training_is_unchanged(tmp_path):
    split, method, model = setup(tmp_path)
    plain = train_deep(method, model, split, CFG, torch.device("cpu"), 0)
    last = weights(model)

    split, method, model = setup(tmp_path)
    scripted, seen = iter([0.2, 0.5, 0.3]), []

    def validate(m):
        assert not m.training  # encoded in eval mode
        seen.append(weights(m))
        return next(scripted)

    logs = train_deep(method, model, split, CFG, torch.device("cpu"), 0, validate=validate)
    assert [l["loss"] for l in logs] == [l["loss"] for l in plain]  # validating does not change training
    assert [l["val"] for l in logs] == [0.2, 0.5, 0.3]
    assert [l.get("selected", False) for l in logs] == [False, True, False]
    now = weights(model)
    assert all(torch.equal(now[k], seen[1][k]) for k in now)  # epoch 2's weights, not the last
    assert all(torch.equal(seen[2][k], last[k]) for k in now)
    assert any(not torch.equal(now[k], last[k]) for k in now)


def test_select_every_validates_every_nth_epoch_and_the_last(tmp_path):
    split, method, model = setup(tmp_path)
    calls = []
    logs = train_deep(method, model, split, dict(CFG, epochs=5, select="map", select_every=2), torch.device("cpu"), 0,
                      validate=lambda m: calls.append(1) or float(len(calls)))
    assert [l["epoch"] for l in logs if "val" in l] == [2, 4, 5]
    assert [l["epoch"] for l in logs if l.get("selected")] == [5]


class Guarded(torch.utils.data.Dataset):
    """The query split, refusing any look (labels or items) until training is over."""

    def __init__(self, split, state):
        self.split, self.state = split, state

    def _check(self):
        if not self.state["trained"]:
            raise AssertionError("the query split was read before training ended")

    @property
    def labels(self):
        self._check()
        return self.split.labels

    def __len__(self):
        return len(self.split)

    def __getitem__(self, i):
        self._check()
        return self.split[i]

    def __getattr__(self, name):
        return getattr(self.split, name)


def test_a_run_selects_on_val_and_never_reads_the_queries_before_training_ends(tmp_path, monkeypatch):
    import hashbench.runner as runner_mod

    state = {"trained": False, "validations": 0}
    real_get, real_train = runner_mod.Runner._load_data, runner_mod.train_deep

    def load(self):
        real_get(self)
        if not isinstance(self.splits["query"], Guarded):
            self.splits["query"] = Guarded(self.splits["query"], state)

    def train(*a, validate=None, **k):
        def counted(model):
            state["validations"] += 1
            return validate(model)
        logs = real_train(*a, validate=counted, **k)
        state["trained"] = True
        return logs

    monkeypatch.setattr(runner_mod.Runner, "_load_data", load)
    monkeypatch.setattr(runner_mod, "train_deep", train)
    out = tmp_path / "out"
    assert main(["run", f"out={out}", "methods=dsrh", "epochs=3", "train.select=map@20", *TINY]) == 0
    rec = json.loads((out / "results.jsonl").read_text())
    vals = [l["val"] for l in rec["train_log"]]
    assert state["validations"] == 3 and len(vals) == 3 and all(0 <= v <= 1 for v in vals)
    sel = rec["selection"]
    assert sel["metric"] == "map@20" and sel["value"] == max(vals) and sel["epoch"] == 1 + vals.index(max(vals))
    assert sel["data"]["splits"]["val"]["n"] == 16
    assert rec["config"]["train"]["select"] == "map@20"


def test_the_choice_survives_an_interruption(tmp_path, interrupt_after_first_epoch):
    words = ["run", "methods=dsrh", "epochs=3", "train.select=map", *TINY]
    assert main([*words, f"out={tmp_path / 'a'}"]) == 130
    from hashbench.checkpoint import load_checkpoint

    (ckpt,) = (tmp_path / "a" / "checkpoints").glob("*.pt")
    best = load_checkpoint(ckpt)["best"]  # the best so far travels with the checkpoint
    assert best["epoch"] == 1 and set(best) == {"value", "epoch", "model", "method"}
    interrupt_after_first_epoch()
    assert main([*words, f"out={tmp_path / 'a'}"]) == 0
    assert main([*words, f"out={tmp_path / 'b'}"]) == 0
    a, b = (json.loads((tmp_path / d / "results.jsonl").read_text()) for d in "ab")
    assert a["selection"]["epoch"] == b["selection"]["epoch"] and a["selection"]["value"] == b["selection"]["value"]
    assert [l["val"] for l in a["train_log"]] == [l["val"] for l in b["train_log"]]
    codes = [np.load(tmp_path / d / r["codes"])["query"] for d, r in (("a", a), ("b", b))]
    assert np.array_equal(*codes)


def test_selection_needs_a_val_split_and_a_known_metric(tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["run", f"out={out}", "methods=dsrh", "train.select=mapp"]) == 2
    assert "train.select: unknown metric 'mapp'" in capsys.readouterr().err and not out.exists()
    assert main(["run", f"out={out}", "methods=dsrh", "train.select=map", "dataset.n_val=0", *TINY[:3]]) == 2
    assert "set dataset.n_val=N" in capsys.readouterr().err and not (out / "results.jsonl").exists()
