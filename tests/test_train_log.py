"""train.log: per-epoch curves in TensorBoard event files (read back here) or a wandb run."""
import importlib
import sys
import types

import pytest

from hashbench.cli import main
from hashbench.results import read_records

TINY = ["dataset.n_train=48", "dataset.n_query=12", "dataset.n_database=40", "device=cpu", "bits=8",
        "methods=dsrh", "backbone.name=test_resnet"]


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("HASHBENCH_CACHE", str(tmp_path / "cache"))


def scalars(folder) -> dict[str, list[tuple[int, float]]]:
    """Every scalar of every event file in ``folder``, by tag, as (step, value) in step order."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(folder))
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


def log_folder(out):
    (folder,) = (out / "logs").iterdir()
    return folder


@pytest.mark.usefixtures("one_torch_thread")
def test_tensorboard_holds_each_epochs_loss_terms_and_learning_rates(tmp_path):
    pytest.importorskip("tensorboard")
    out = tmp_path / "out"
    assert main(["run", f"out={out}", "epochs=3", "train.log=tensorboard", *TINY]) == 0
    (record,) = read_records(out / "results.jsonl")
    folder = log_folder(out)
    assert folder.name == f"dsrh_8bits_seed0_{record['config_hash'][:8]}"
    got = scalars(folder)
    log = record["train_log"]
    assert [s for s, _ in got["loss"]] == [1, 2, 3]
    assert [v for _, v in got["loss"]] == pytest.approx([e["loss"] for e in log], rel=1e-6)  # float32 in events
    for term in ("triplet", "balance"):
        assert [v for _, v in got[f"terms/{term}"]] == pytest.approx([e[term] for e in log], rel=1e-6)
    lrs = {tag: [v for _, v in values] for tag, values in got.items() if tag.startswith("lr/")}
    assert "lr/backbone" in lrs and len(lrs) >= 2
    # dsrh drops its head's rate after the first epoch (head_lr_drop): the curve shows it
    assert any(v[0] > v[1] for v in lrs.values())


@pytest.mark.usefixtures("one_torch_thread")
def test_a_resumed_run_continues_its_curve(tmp_path, interrupt_after_first_epoch):
    pytest.importorskip("tensorboard")
    out = tmp_path / "out"
    words = ["epochs=3", "train.log=tensorboard", *TINY]
    assert main(["run", f"out={out}", *words]) == 130  # killed after epoch 1
    assert [s for s, _ in scalars(log_folder(out))["loss"]] == [1]
    interrupt_after_first_epoch()
    assert main(["run", f"out={out}", *words]) == 0
    (record,) = read_records(out / "results.jsonl")
    loss = scalars(log_folder(out))["loss"]
    assert [s for s, _ in loss] == [1, 2, 3]  # one curve over two event files, no epoch twice
    assert [v for _, v in loss] == pytest.approx([e["loss"] for e in record["train_log"]], rel=1e-6)


@pytest.mark.usefixtures("one_torch_thread")
def test_the_log_is_not_part_of_the_runs_identity(tmp_path, capsys):
    pytest.importorskip("tensorboard")
    out = tmp_path / "out"
    assert main(["run", f"out={out}", "epochs=1", *TINY]) == 0
    capsys.readouterr()
    assert main(["run", f"out={out}", "epochs=1", "train.log=tensorboard", *TINY]) == 0
    assert "1 of 1 runs already done" in capsys.readouterr().out  # same config hash: not retrained
    assert len(read_records(out / "results.jsonl")) == 1 and not (out / "logs").exists()


def test_a_missing_library_is_refused_before_any_work(tmp_path, capsys, monkeypatch):
    real = importlib.import_module

    def without_tensorboard(name, *args, **kwargs):
        if name == "torch.utils.tensorboard":
            raise ImportError("No module named 'tensorboard'")
        return real(name, *args, **kwargs)

    monkeypatch.setattr("hashbench.train_log.importlib.import_module", without_tensorboard)
    out = tmp_path / "out"
    assert main(["run", f"out={out}", "train.log=tensorboard", *TINY]) == 2
    err = capsys.readouterr().err
    (line,) = err.splitlines()
    assert line.startswith("hashbench: error: train.log=tensorboard needs pip install 'hashbench[tensorboard]'")
    assert "Traceback" not in err and not out.exists()


def test_an_unknown_log_is_refused_with_the_valid_ones(tmp_path, capsys):
    assert main(["run", f"out={tmp_path / 'out'}", "train.log=mlflow", *TINY]) == 2
    (line,) = capsys.readouterr().err.splitlines()
    assert "train.log" in line and "none" in line and "tensorboard" in line and "wandb" in line


class FakeWandb(types.ModuleType):
    """The part of wandb's API a log uses: ``init`` returns a run with ``log`` and ``finish``."""

    def __init__(self):
        super().__init__("wandb")
        self.runs = []

    def init(self, **kwargs):
        run = types.SimpleNamespace(kwargs=kwargs, logged=[], finished=False)
        run.log = lambda values, step: run.logged.append((step, values))
        run.finish = lambda: setattr(run, "finished", True)
        self.runs.append(run)
        return run


@pytest.mark.usefixtures("one_torch_thread")
@pytest.mark.parametrize("api_key, mode", [(None, "offline"), ("k", "online")])
def test_wandb_is_offline_unless_the_user_set_it_up(tmp_path, monkeypatch, api_key, mode):
    fake = FakeWandb()
    monkeypatch.setitem(sys.modules, "wandb", fake)
    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.delenv("WANDB_PROJECT", raising=False)
    if api_key:
        monkeypatch.setenv("WANDB_API_KEY", api_key)
    else:
        monkeypatch.delenv("WANDB_API_KEY", raising=False)
    out = tmp_path / "out"
    assert main(["run", f"out={out}", "epochs=2", "train.log=wandb", *TINY]) == 0
    (record,) = read_records(out / "results.jsonl")
    (run,) = fake.runs
    assert run.kwargs["mode"] == mode and run.kwargs["project"] == "hashbench"
    assert run.kwargs["dir"] == str(out / "logs" / "wandb")
    assert run.kwargs["name"] == f"dsrh_8bits_seed0_{record['config_hash'][:8]}"
    assert run.kwargs["config"]["method"]["type"] == record["config"]["method"]["type"]
    assert [s for s, _ in run.logged] == [1, 2] and run.finished
    assert [v["loss"] for _, v in run.logged] == [e["loss"] for e in record["train_log"]]
    assert all("lr/backbone" in v and "terms/balance" in v for _, v in run.logged)


def test_wandb_mode_follows_the_users_setting(monkeypatch):
    from hashbench.train_log import wandb_mode

    monkeypatch.setenv("WANDB_API_KEY", "k")
    monkeypatch.setenv("WANDB_MODE", "disabled")
    assert wandb_mode() == "disabled"


def test_epoch_values_name_terms_learning_rates_and_the_val_score():
    import torch

    from hashbench.train_log import epoch_values

    p = [torch.nn.Parameter(torch.zeros(1)) for _ in range(3)]
    opt = torch.optim.SGD([dict(params=[p[0]], lr=0.1, name="backbone"), dict(params=[p[1]], lr=0.2, name="head"),
                           dict(params=[p[2]], lr=0.3, name="head")])
    log = dict(epoch=3, loss=1.5, seconds=2.0, triplet=1.2, balance=0.3, val=0.61, selected=True)
    assert epoch_values(log, opt) == {"loss": 1.5, "seconds": 2.0, "val": 0.61, "terms/triplet": 1.2,
                                      "terms/balance": 0.3, "lr/backbone": 0.1, "lr/head": 0.2, "lr/head#2": 0.3}
