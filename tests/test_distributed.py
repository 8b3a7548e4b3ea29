"""Distributed training: two CPU processes (gloo, DDP) equal one process on the same global batch.

The oracle is the single-process trainer itself. The model uses a LayerNorm backbone
(``test_convnext``) so that nothing depends on how the batch is split (BatchNorm statistics
would: on CUDA the trainer makes them global with SyncBatchNorm, which has no CPU kernel). The
optimiser is SGD, whose update is proportional to the gradient: a gradient off by the number
of processes — the classic DDP-with-gathered-loss mistake — shows up (Adam would hide it).
"""
from __future__ import annotations

import os
import socket
import time

import numpy as np
import pytest
import torch

from hashbench.distributed import World, init_distributed
from hashbench.errors import HashbenchError

BITS = 16
# One epoch = one step on the whole 64-image training split, so both runs see the same global
# batch whatever order their samplers draw (DSRH's loss does not depend on the order).
CFG = dict(epochs=2, batch_size=64, optimizer="sgd", lr=0.05, momentum=0.9, weight_decay=5e-4)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _data(cache_dir):
    from hashbench.registry import DATASETS, build

    return build(DATASETS, dict(type="multidigits", n_train=64, n_query=16, n_database=32, cache_dir=str(cache_dir)))


PLUGINS = os.path.join(os.path.dirname(__file__), "plugins")


def _model(name: str = "dsrh", params: dict | None = None, plugin: str | None = None):
    from hashbench.model import DeepHasher
    from hashbench.plugins import import_plugin
    from hashbench.registry import BACKBONES, METHODS, build

    if plugin:
        import_plugin(os.path.join(PLUGINS, plugin))
    torch.manual_seed(0)
    method = build(METHODS, dict(type=name, **(params or {})), n_bits=BITS)
    model = DeepHasher.for_method(build(BACKBONES, dict(type="timm", name="test_convnext")), method)
    return method, model


def _worker(rank: int, port: int, cache_dir: str, out_dir: str, name: str, params: dict, cfg: dict,
            plugin: str | None) -> None:
    from hashbench.train import train_deep

    os.environ.update(RANK=str(rank), WORLD_SIZE="2", LOCAL_RANK=str(rank), MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(port))
    torch.set_num_threads(1)
    world = init_distributed("pytorch", device="cpu", timeout_s=60)  # a hung peer fails, not hangs
    try:
        assert (world.rank, world.world_size, world.is_main) == (rank, 2, rank == 0)
        method, model = _model(name, params, plugin)
        logs = train_deep(method, model, _data(cache_dir).get("train"), cfg, world.device, seed=0,
                          checkpoint=os.path.join(out_dir, "ddp.pt"), world=world)
        torch.save(dict(state=model.state_dict(), method=method.state_dict(), logs=logs),
                   os.path.join(out_dir, f"rank{rank}.pt"))
    finally:
        world.close()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# Schedules of the methods below whose gradients are far from the others': DTSH's loss is summed over
# many tuples (at lr 0.05 two SGD steps diverge, and a diverging run amplifies float-order differences
# beyond any tolerance); IDHN's is a mean with beta/K-scaled inner products (at lr 0.05 two steps move
# the weights by less than the check that training did something); MIHash's mutual information is at its
# minimum, with a vanishing gradient, while all relaxed distances are alike, as at initialisation.
TRAIN_OF = {"dtsh": {"lr": 1e-3}, "idhn": {"lr": 0.5}, "mihash": {"lr": 1.0}}


def _every_other_method() -> list:
    """One case per registered deep method class not named in the cases below (variants share
    their class's case): each runs under two gloo processes with its defaults."""
    from hashbench.method import DeepMethod, method_class
    from hashbench.registry import METHODS, entries

    found = entries(METHODS)
    classes, cases = {method_class(found[n]) for n in ("dsrh", "dpsh")}, []
    for name, entry in found.items():
        cls = method_class(entry)
        if issubclass(cls, DeepMethod) and cls not in classes and cls.__module__.startswith("hashbench.methods"):
            classes.add(cls)
            cases.append((name, {}, TRAIN_OF.get(name, {}), None))
    return cases


@pytest.mark.parametrize("name,params,train,plugin", [
    ("dsrh", {}, {}, None),  # in-batch triplets
    ("dpsh", {}, {}, None),  # pairs with a bank of the whole training set
    # the released code's triplets: 64 items (one per image), two global batches of 32 an epoch, so
    # each process's share of each batch must be the right one
    ("dsrh", {"sampler": "released", "balance_count": 1}, {"batch_size": 32}, None),
    # the four families of tests/test_method_plugins.py: the bank's gradients are small (lr up, so
    # that training moves the weights measurably); the tuple sampler's processes hold different
    # numbers of tuples; the centres are parameters of the method, not of the model
    ("plugin_bank", {}, {"lr": 2.0}, "bank_plugin.py"),
    ("plugin_tuples", {}, {"batch_size": 32}, "tuples_plugin.py"),
    ("plugin_centres", {}, {}, "centres_plugin.py"),
    ("plugin_asym", {}, {}, "asym_plugin.py"),
    *_every_other_method(),
])
def test_two_gloo_processes_equal_one_process_on_the_global_batch(tmp_path, name, params, train, plugin):
    from hashbench.checkpoint import load_checkpoint
    from hashbench.train import train_deep

    data = _data(tmp_path)  # generated once here; the workers read the cache
    cfg = dict(CFG, **train)
    workers = torch.multiprocessing.spawn(_worker, args=(_free_port(), str(tmp_path), str(tmp_path), name, params, cfg,
                                                         plugin), nprocs=2, join=False)
    deadline = time.monotonic() + 180
    while not workers.join(timeout=1):  # re-raises a worker's exception
        if time.monotonic() > deadline:
            for proc in workers.processes:
                proc.kill()
            pytest.fail("the two training processes did not finish within 180 s")

    method, model = _model(name, params, plugin)
    start = {k: v.clone() for k, v in model.state_dict().items()}
    logs = train_deep(method, model, data.get("train"), cfg, torch.device("cpu"), seed=0)
    single = model.state_dict()
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(2)]

    moved = max((single[k] - start[k]).abs().max().item() for k in single)
    assert moved > 1e-2  # training did something measurable
    if method.code_norm == "batch":
        # The codes' BatchNorm normalises each process's half of the batch: on CUDA the trainer makes
        # it global (SyncBatchNorm); gloo has no such kernel, so here the processes must agree with
        # each other (DDP keeps the parameters in step; each process's running statistics are its own
        # until DDP broadcasts rank 0's at the next forward) but not with one process on the whole batch.
        for k, _ in model.named_parameters():
            torch.testing.assert_close(ranks[1]["state"][k], ranks[0]["state"][k], msg=f"parameter {k}")
        assert all(np.isfinite(l["loss"]) for r in ranks for l in r["logs"])
        return
    for k, want in single.items():
        for r in ranks:
            torch.testing.assert_close(r["state"][k], want, rtol=1e-4, atol=1e-5, msg=f"parameter {k}")
    for k, want in method.state_dict().items():  # the method's own state: a bank, centres, database codes
        for r in ranks:
            torch.testing.assert_close(r["method"][k], want, rtol=1e-4, atol=1e-5, msg=f"method state {k}")
    for r in ranks:  # every process logs the global batch's loss
        assert [l["loss"] for l in r["logs"]] == pytest.approx([l["loss"] for l in logs], rel=1e-5, abs=1e-4)
    ckpt = load_checkpoint(tmp_path / "ddp.pt")  # written by rank 0 alone, with each rank's RNG state
    assert ckpt["epoch"] == 2 and len(ckpt["rng"]) == 2


def test_single_process_world_passes_the_batch_through():
    world = init_distributed("none", device="cpu")
    assert isinstance(world, World) and (world.rank, world.world_size, world.is_main) == (0, 1, True)
    codes, labels, rows = torch.randn(4, 8, requires_grad=True), torch.ones(4, 3), torch.arange(4)
    got_codes, got_labels, got_rows, got_tuples = world.gather_batch(codes, labels, rows, None)
    assert got_codes is codes and got_labels is labels and got_rows is rows and got_tuples is None
    assert world.all_gather_object(7) == [7]
    world.barrier()  # a no-op


def test_launcher_errors_are_one_line(monkeypatch):
    with pytest.raises(HashbenchError, match=r"unknown launcher 'slurm'; valid: none, pytorch$"):
        init_distributed("slurm")
    for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(key, raising=False)
    with pytest.raises(HashbenchError, match="launcher=pytorch needs torchrun's environment") as e:
        init_distributed("pytorch", device="cpu")
    assert "\n" not in str(e.value)


def test_a_cpu_run_hides_the_gpus_from_itself(monkeypatch):
    """A gloo process must not see GPUs: mmengine's logger would index CUDA_VISIBLE_DEVICES by LOCAL_RANK."""
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0")
    monkeypatch.setattr(torch.distributed, "is_initialized", lambda: True)  # no real group: only the setup
    monkeypatch.setattr(torch.distributed, "get_rank", lambda: 1)
    monkeypatch.setattr(torch.distributed, "get_world_size", lambda: 2)
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("LOCAL_RANK", "1")
    monkeypatch.setenv("MASTER_ADDR", "127.0.0.1")
    monkeypatch.setenv("MASTER_PORT", "1")
    world = init_distributed("pytorch", device="cpu")
    assert (world.rank, world.world_size, world.device.type) == (1, 2, "cpu")
    assert os.environ["CUDA_VISIBLE_DEVICES"] == ""
