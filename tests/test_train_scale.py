"""The training loop at scale: resumable checkpoints, precision options, no per-step host syncs.

Oracles: an uninterrupted run of the same loop (resume must reproduce its weights bit for bit on
the CPU), the fp32 run (for precision options the CPU ignores), and a count of host reads that
must not grow with the number of steps. CUDA-only behaviour is tested where CUDA exists.
"""
from __future__ import annotations

import hashlib
import io
import warnings

import pytest
import torch

from hashbench.errors import HashbenchError
from hashbench.model import DeepHasher
from hashbench.registry import BACKBONES, DATASETS, METHODS, build
from hashbench.checkpoint import load_checkpoint
from hashbench.train import train_deep

BITS = 16
CPU = torch.device("cpu")
# 2 steps per epoch; cosine schedule and DSRH's hash-layer drop at half time, so a resumed run
# must also restore the schedule, and AdamW so it must restore the optimiser's moments.
CFG = dict(epochs=2, batch_size=32, optimizer="adamw", lr=1e-3, cosine=True)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def train_split(tmp_path_factory):
    data = build(DATASETS, dict(type="multidigits", n_train=64, n_query=16, n_database=32,
                                cache_dir=str(tmp_path_factory.mktemp("multidigits"))))
    return data.get("train")


def fresh(dropout: float = 0.0, name: str = "dsrh"):
    torch.manual_seed(0)
    method = build(METHODS, dict(type=name), n_bits=BITS)
    model = DeepHasher(build(BACKBONES, dict(type="timm", name="test_resnet")), BITS, dropout=dropout)
    return method, model


class FailAt:
    """Wraps a method's ``compute_loss``; raises KeyboardInterrupt (a kill) on its ``n``-th call."""

    def __init__(self, fn, n):
        self.fn, self.n, self.calls = fn, n, 0

    def __call__(self, *args, **kwargs):
        self.calls += 1
        if self.calls == self.n:
            raise KeyboardInterrupt
        return self.fn(*args, **kwargs)


def same_weights(a, b) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def without_seconds(logs):
    return [{k: v for k, v in log.items() if k != "seconds"} for log in logs]


@pytest.mark.parametrize("workers,name", [(0, "dsrh"), (2, "dsrh"), (0, "dpsh")])  # dpsh: its bank of outputs
def test_resume_after_interruption_equals_an_uninterrupted_run(train_split, tmp_path, workers, name):
    cfg = {**CFG, "workers": workers}
    method, whole = fresh(dropout=0.2, name=name)  # dropout: the global RNG state must be restored too
    want = train_deep(method, whole, train_split, cfg, CPU, seed=3)

    ckpt = tmp_path / "run.pt"
    method, model = fresh(dropout=0.2, name=name)
    method.compute_loss = FailAt(method.compute_loss, 3)  # killed in the first step of epoch 2
    with pytest.raises(KeyboardInterrupt):
        train_deep(method, model, train_split, cfg, CPU, seed=3, checkpoint=ckpt)
    assert load_checkpoint(ckpt)["epoch"] == 1

    method, resumed = fresh(dropout=0.2, name=name)  # a new process would rebuild the model from the seed
    got = train_deep(method, resumed, train_split, cfg, CPU, seed=3, checkpoint=ckpt)
    assert same_weights(resumed, whole)
    assert without_seconds(got) == without_seconds(want)
    assert load_checkpoint(ckpt)["epoch"] == 2


def test_finished_checkpoint_returns_without_training(train_split, tmp_path):
    ckpt = tmp_path / "run.pt"
    method, model = fresh()
    logs = train_deep(method, model, train_split, CFG, CPU, seed=0, checkpoint=ckpt)
    method, again = fresh()
    method.compute_loss = FailAt(method.compute_loss, 1)
    assert without_seconds(train_deep(method, again, train_split, CFG, CPU, seed=0, checkpoint=ckpt)) == \
        without_seconds(logs)
    assert same_weights(again, model)
    # after its checksum line, the file is safe to load (torch >= 2.6's default): tensors and plain values only
    header, payload = ckpt.read_bytes().split(b"\n", 1)
    assert header.startswith(b"HASHBENCH-CHECKPOINT sha256=" + hashlib.sha256(payload).hexdigest().encode())
    state = torch.load(io.BytesIO(payload), weights_only=True)
    assert {"model", "method", "optimizer", "scheduler", "rng", "logs", "epoch"} <= set(state)


def corrupt_middle(path, n=2000):
    """XOR ``n`` bytes in the middle of a file (bit rot, a bad copy)."""
    data = bytearray(path.read_bytes())
    mid = len(data) // 2
    data[mid:mid + n] = bytes(b ^ 0x5A for b in data[mid:mid + n])
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("damage", ["corrupted", "another configuration", "garbage", "old format"])
def test_unusable_checkpoint_is_set_aside_and_training_starts_from_scratch(train_split, tmp_path, caplog, damage):
    ckpt = tmp_path / "run.pt"
    method, model = fresh()
    cfg = {**CFG, "epochs": 1}
    train_deep(method, model, train_split, {**cfg, "lr": 1e-2} if damage == "another configuration" else cfg, CPU,
               seed=0, checkpoint=ckpt)
    if damage == "corrupted":
        corrupt_middle(ckpt)
    elif damage == "garbage":
        ckpt.write_bytes(b"state")
    elif damage == "old format":  # what earlier versions wrote: torch.save's bytes alone
        ckpt.write_bytes(ckpt.read_bytes().split(b"\n", 1)[1])
    before = ckpt.read_bytes()
    ref_method, ref = fresh()
    ref_logs = train_deep(ref_method, ref, train_split, cfg, CPU, seed=0)
    method, model = fresh()
    with caplog.at_level("WARNING", logger="hashbench.train"):
        logs = train_deep(method, model, train_split, cfg, CPU, seed=0, checkpoint=ckpt)
    # from scratch: the same weights and losses as a run that never saw the checkpoint
    assert same_weights(model, ref) and without_seconds(logs) == without_seconds(ref_logs)
    (warning,) = [r.getMessage() for r in caplog.records if r.name == "hashbench.train"]
    why = {"corrupted": "is damaged: its contents do not match the sha256", "garbage": "is not a hashbench training",
           "old format": "is not a hashbench training", "another configuration": "another training configuration"}
    assert why[damage] in warning and "moved to run.pt.bad, training from scratch" in warning
    assert "\n" not in warning
    assert (tmp_path / "run.pt.bad").read_bytes() == before  # nothing thrown away
    assert load_checkpoint(ckpt)["epoch"] == 1  # the new run wrote a good one


def test_resuming_says_from_which_epoch(train_split, tmp_path, capsys):
    ckpt = tmp_path / "run.pt"
    method, model = fresh()
    method.compute_loss = FailAt(method.compute_loss, 3)  # killed in epoch 2 of 2 steps each
    with pytest.raises(KeyboardInterrupt):
        train_deep(method, model, train_split, CFG, CPU, seed=0, checkpoint=ckpt, label="dsrh 16")
    capsys.readouterr()
    method, model = fresh()
    train_deep(method, model, train_split, CFG, CPU, seed=0, checkpoint=ckpt, label="dsrh 16")
    assert f"dsrh 16 resuming from epoch 1 of 2 (checkpoint {ckpt})" in capsys.readouterr().err


def test_a_full_disk_while_checkpointing_is_one_line(train_split, tmp_path, monkeypatch):
    import errno

    import hashbench.atomic as atomic

    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(atomic.os, "fsync", full)
    method, model = fresh()
    with pytest.raises(HashbenchError, match=r"the disk is full: writing .*run.pt failed \(.* MB free\)") as e:
        train_deep(method, model, train_split, {**CFG, "epochs": 1}, CPU, seed=0, checkpoint=tmp_path / "run.pt")
    assert "\n" not in str(e.value)


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_mixed_precision_on_cpu_trains_in_fp32_and_says_so(train_split, precision):
    method, ref = fresh()
    train_deep(method, ref, train_split, {**CFG, "epochs": 1}, CPU, seed=0)
    method, model = fresh()
    with pytest.warns(UserWarning, match=f"train.precision={precision} applies to CUDA only; training on cpu in fp32"):
        train_deep(method, model, train_split, {**CFG, "epochs": 1, "precision": precision}, CPU, seed=0)
    assert same_weights(model, ref)


def test_unknown_precision_is_refused(train_split):
    method, model = fresh()
    with pytest.raises(HashbenchError, match=r"train.precision must be one of fp32, bf16, fp16; got 'fp8'"):
        train_deep(method, model, train_split, {**CFG, "precision": "fp8"}, CPU, seed=0)


def test_no_host_reads_inside_the_training_step(train_split, monkeypatch):
    """Reads of tensor values from Python (item, float, int, bool, tolist) happen per epoch, not per step.

    With SGD: torch's non-fused Adam reads its CPU-side step counter every step (a host tensor,
    no device sync; on CUDA the trainer uses the fused kernels, which keep it on the device).
    """
    reads = []
    for name in ("item", "__float__", "__int__", "__bool__", "tolist"):
        real = getattr(torch.Tensor, name)

        def counted(self, *a, _real=real, _name=name, **k):
            reads.append(_name)
            return _real(self, *a, **k)

        monkeypatch.setattr(torch.Tensor, name, counted)

    def count(batch_size):
        reads.clear()
        method, model = fresh()
        train_deep(method, model, train_split, {**CFG, "epochs": 1, "batch_size": batch_size, "optimizer": "sgd"},
                   CPU, seed=0)
        return len(reads)

    assert count(32) == count(16)  # 2 steps and 4 steps: the same number of reads


def test_channels_last_option_converts_the_model(train_split):
    method, model = fresh()
    train_deep(method, model, train_split, {**CFG, "epochs": 1, "channels_last": True}, CPU, seed=0)
    conv = next(m for m in model.modules() if isinstance(m, torch.nn.Conv2d))
    assert conv.weight.is_contiguous(memory_format=torch.channels_last)


# ------------------------------------------------------------------------------------- CUDA only
cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


@cuda
@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_amp_on_cuda_trains_resumes_and_keeps_the_scaler(train_split, tmp_path, precision):
    dev = torch.device("cuda")
    ckpt = tmp_path / "run.pt"
    method, model = fresh()
    logs = train_deep(method, model, train_split, {**CFG, "precision": precision}, dev, seed=0, checkpoint=ckpt)
    assert all(torch.isfinite(torch.tensor(log["loss"])) for log in logs)
    conv = next(m for m in model.modules() if isinstance(m, torch.nn.Conv2d))
    assert conv.weight.is_contiguous(memory_format=torch.channels_last)  # the CUDA default
    state = load_checkpoint(ckpt)
    assert bool(state["optimizer"].get("loss_scaler")) == (precision == "fp16")  # bf16: a disabled scaler


@cuda
def test_no_device_syncs_inside_the_cuda_step(train_split):
    dev = torch.device("cuda")

    def syncs(batch_size):
        method, model = fresh()
        torch.cuda.synchronize()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            torch.cuda.set_sync_debug_mode("warn")
            try:
                train_deep(method, model, train_split, {**CFG, "epochs": 1, "batch_size": batch_size,
                                                        "precision": "fp16"}, dev, seed=0)
            finally:
                torch.cuda.set_sync_debug_mode("default")
        return sum("synchroniz" in str(w.message) for w in caught)

    syncs(32)  # warm-up: one-off syncs (cuDNN autotuning, allocator) do not count
    assert syncs(32) == syncs(8)

