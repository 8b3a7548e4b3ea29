"""The one training loop every deep method shares.

Nothing here knows a particular method: a :class:`~hashbench.method.DeepMethod` is asked, through
its declared hooks only, how batches are drawn, what state it keeps, how to relax codes and what
its loss is; the loop supplies data, optimiser, schedule, precision, checkpoints, distribution
over processes and progress. The pieces live in their own modules: :mod:`hashbench.device`
(device, seeds, precision), :mod:`hashbench.optim` (parameter groups, optimiser, schedule),
:mod:`hashbench.checkpoint` (the checkpoint format), :mod:`hashbench.sampling` (batch sources),
:mod:`hashbench.progress`.

The loop is ours rather than mmengine's ``Runner``, which wants a ``BaseModel`` with
``train_step`` and its own hooks; the parameter update itself goes through mmengine's optimizer
wrappers (:func:`hashbench.optim.optim_wrapper`).
"""
from __future__ import annotations

import logging
import os
import time
from contextlib import nullcontext

import numpy as np
import torch

from hashbench.augment import BatchAugment, augmented, on_device
from hashbench.checkpoint import (FORMAT, BadCheckpoint, fingerprint, load_checkpoint, rng_state, save_checkpoint,
                                  set_aside, set_rng_state)
from hashbench.device import resolve_precision, seed_everything
from hashbench.errors import HashbenchError
from hashbench.optim import build_optimizer, optim_wrapper, param_groups, schedule
from hashbench.progress import Progress, note
from hashbench.sampling import data_loader
from hashbench.settings import TRAIN
from hashbench.train_log import epoch_values

logger = logging.getLogger("hashbench.train")


def _loader(source, cfg: dict, device, generator, seed: int, world, distributed: bool):
    """The DataLoader of a batch source, its sampler (``set_epoch`` each epoch) and the generator
    whose state a checkpoint must keep (None when the order is a function of seed and epoch)."""
    batch = min(int(cfg["batch_size"]), len(source))
    replicas, rank = (world.world_size, world.rank) if distributed else (1, 0)
    if batch % replicas:
        raise HashbenchError(f"train.batch_size {batch} must be divisible by the {replicas} processes "
                             "(it is the global batch)")
    workers = int(cfg["workers"])
    sampler = source.order(generator, rank=rank, replicas=replicas, batch=batch)
    if sampler is not None:
        loader = data_loader(source.items, batch // replicas, shuffle=False, sampler=sampler, device=device,
                             workers=workers, drop_last=True)
        return loader, sampler, generator
    if distributed:
        from torch.utils.data.distributed import DistributedSampler

        sampler = DistributedSampler(source.items, num_replicas=replicas, rank=rank, shuffle=True, seed=seed,
                                     drop_last=True)
        loader = data_loader(source.items, batch // replicas, shuffle=False, sampler=sampler, device=device,
                             generator=torch.Generator().manual_seed(seed + rank), workers=workers, drop_last=True)
        return loader, sampler, None  # the order is a function of (seed, epoch): set_epoch
    loader = data_loader(source.items, batch, shuffle=True, device=device, generator=generator, workers=workers,
                         drop_last=True)
    return loader, None, generator


def _usable_checkpoint(checkpoint, fp: str, label: str) -> dict | None:
    """The state to continue from, or None (train from scratch). A checkpoint that cannot be
    continued — damaged, of another format, or of another training configuration — is moved aside
    to ``<name>.bad`` with one warning line, and training starts again from scratch."""
    if not os.path.exists(checkpoint):
        return None
    try:
        state = load_checkpoint(checkpoint)
        if state["fingerprint"] != fp:
            raise BadCheckpoint(f"checkpoint {str(checkpoint)!r} was written by another training configuration "
                                "(method, code length, seed, train.* or model)")
        return state
    except BadCheckpoint as e:
        try:
            where = f"moved to {set_aside(checkpoint).name}"
        except OSError:  # another process of the run moved it already
            where = "set aside"
        logger.warning("%s: %s; %s, training from scratch", label, e, where)
        return None


def _cpu_copy(state: dict) -> dict:
    return {k: v.detach().to("cpu", copy=True) for k, v in state.items()}


def train_deep(method, model, split, cfg: dict, device: torch.device, seed: int, label: str = "", *,
               checkpoint: str | os.PathLike | None = None, world=None, log_to=None, validate=None) -> list[dict]:
    """Train ``model`` (a :class:`~hashbench.model.DeepHasher`) and ``method`` on ``split``.

    Parameters
    ----------
    cfg : dict
        The ``train`` section (:data:`hashbench.settings.TRAIN`; keys not given take their
        defaults): ``epochs``, ``batch_size`` (the global batch: split over the processes when
        distributed), ``lr``, ``momentum``, ``weight_decay``, ``optimizer`` (sgd|adamw), ``cosine``,
        ``precision`` (fp32|bf16|fp16; CUDA only — on the CPU bf16/fp16 train in fp32 with a
        warning), ``channels_last`` (default: on for CUDA), ``workers`` (DataLoader worker
        processes; pinned memory on CUDA), ``sync_bn`` (distributed CUDA runs: BatchNorm
        statistics over the global batch).
    checkpoint : path or None
        After every epoch the full training state (model, the method's own state, optimiser,
        schedule, loss scaler, epoch, logs, RNG states) is written there atomically; if the file
        exists at the start, training continues after its last epoch — on the CPU with the same
        final weights as an uninterrupted run — and says so in one line. A checkpoint that is
        damaged (its sha256 fails), of another format or of another configuration is moved aside
        to ``<name>.bad`` with a warning, and training starts from scratch.
    log_to : a :mod:`hashbench.train_log` log or None
        Gets each epoch's loss, terms, learning rates, seconds and validation score (the main
        process only).
    validate : callable or None
        Model selection (``train.select``): ``validate(model) -> float`` (higher is better; the
        model in eval mode) is called on the main process after every ``train.select_every``-th
        epoch and after the last; its value is the epoch log's ``val``. The weights (and the method's state) of the best
        epoch — the first of equal ones — are restored at the end and its log gets
        ``selected=True``. The random state is the same after a validation as before it, so the
        training trajectory does not depend on whether one is made.
    world : :class:`hashbench.distributed.World` or None
        When it spans several processes: the data is sharded, the model wrapped in DDP, and the
        loss computed on the *global* batch (relaxed codes, labels, rows and tuples gathered from
        every process), so that the update equals one process's update on the same global batch.

    Returns the per-epoch logs: ``epoch``, ``loss``, ``seconds``, the loss's named terms and,
    with ``validate``, ``val`` and ``selected``.
    The training step never waits for the device: logged values are summed on the device and
    read once per epoch.
    """
    cfg = TRAIN.check(cfg)
    distributed = world is not None and world.world_size > 1
    is_main = world is None or world.is_main
    generator = seed_everything(seed)
    epochs = cfg["epochs"]
    if len(split) < 2:
        raise HashbenchError(f"the training split has {len(split)} items; at least 2 are needed")
    precision = resolve_precision(cfg["precision"], device)
    channels_last = device.type == "cuda" if cfg["channels_last"] is None else cfg["channels_last"]

    size = getattr(model, "input_hw", None)
    batch_augment = None
    if on_device(cfg["augment"], cfg["augment_on"], device):
        batch_augment = BatchAugment(cfg["augment"], size, seed=seed, rank=world.rank if distributed else 0)
    else:
        split = augmented(split, cfg["augment"], train=True, size=size)
    source = method.batches(split, seed=seed)
    loader, sampler, sampler_generator = _loader(source, cfg, device, generator, seed, world, distributed)
    method.begin(split)  # the method's state exists before a checkpoint is loaded into it

    model.to(device)
    method.to(device)
    if channels_last:
        model.to(memory_format=torch.channels_last)
    named = [*model.named_parameters(), *((f"method.{n}", p) for n, p in method.named_parameters())]
    groups = param_groups(named, float(cfg["lr"]), float(cfg["weight_decay"]), method.lr_mult)
    optimizer = build_optimizer(groups, cfg, device)
    wrapper = optim_wrapper(optimizer, precision)
    steps = epochs * len(loader)
    sched = schedule(optimizer, groups, cosine=cfg["cosine"], steps=steps, drop_at=method.head_lr_drop)

    logs, start, best = [], 0, None
    every = cfg["select_every"]
    fp = fingerprint(method, model, {**cfg, "precision": precision,
                                     "augment_on": "device" if batch_augment else "loader"}, seed)
    state = _usable_checkpoint(checkpoint, fp, label) if checkpoint is not None else None
    if state is not None:
        model.load_state_dict(state["model"])
        method.load_state_dict(state["method"])
        kernels = [{k: g[k] for k in ("fused", "foreach") if k in g} for g in optimizer.param_groups]
        wrapper.load_state_dict(state["optimizer"])
        for group, flags in zip(optimizer.param_groups, kernels):  # this device's kernels, not the writer's
            group.update(flags)
        sched.load_state_dict(state["scheduler"])
        rngs = state["rng"]
        set_rng_state(rngs[world.rank] if distributed and len(rngs) == world.world_size else rngs[0],
                      sampler_generator)
        logs, start = list(state["logs"]), int(state["epoch"])
        best = state.get("best")
        if is_main:
            note(f"{label} resuming from epoch {start} of {epochs} (checkpoint {checkpoint})")

    net = model
    if distributed:
        if device.type == "cuda" and cfg["sync_bn"]:
            net = torch.nn.SyncBatchNorm.convert_sync_batchnorm(net)
        net = torch.nn.parallel.DistributedDataParallel(
            net, device_ids=[device.index] if device.type == "cuda" else None)
    net.train()
    step = start * len(loader)
    memory_format = torch.channels_last if channels_last else torch.preserve_format
    with Progress(label, "epoch", epochs, initial=start, every=True) if is_main else nullcontext() as progress:
        for epoch in range(start, epochs):
            if sampler is not None:
                sampler.set_epoch(epoch)
            method.on_epoch_start(epoch, epochs)
            if batch_augment is not None:
                batch_augment.start_epoch(epoch)
            t0, total, terms = time.perf_counter(), torch.zeros((), device=device), {}
            for batch in loader:
                x, y, indices, tuples = source.unpack(batch)
                if batch_augment is not None:
                    x = batch_augment(x.to(device, non_blocking=True))
                x = x.to(device, non_blocking=True,
                         memory_format=memory_format if x.ndim == 4 else torch.preserve_format)
                y = y.to(device, non_blocking=True)
                indices = indices.to(device, non_blocking=True)
                if tuples is not None:
                    tuples = tuples.to(device, non_blocking=True)
                with wrapper.optim_context(net):  # autocast for bf16/fp16; nothing for fp32
                    z = net(x)
                codes = method.relax(z.float(), step / max(steps, 1))
                if distributed:
                    # The loss sees the global batch. Every process computes the same loss L; the
                    # gather's backward sums the W processes' (equal) gradients for each local code,
                    # and DDP averages the parameter gradients over W: the two factors cancel, and the
                    # update is one process's update on the global batch (tests/test_distributed.py).
                    # The method's own parameters get L's gradient directly: the same on every process.
                    codes, y, indices, tuples = world.gather_batch(codes, y, indices, tuples)
                out = method.compute_loss(codes, y, indices, tuples)
                wrapper.update_params(out["loss"])
                sched.step()
                step += 1
                total += out["loss"].detach()  # stays on the device: no sync inside the step
                for k, v in out.items():
                    if k != "loss":
                        terms[k] = terms.get(k, 0.0) + v
            method.on_epoch_end(epoch, epochs)
            n = max(len(loader), 1)
            log = dict(epoch=epoch + 1, loss=float(total) / n, seconds=time.perf_counter() - t0,
                       **{k: float(v) / n for k, v in terms.items()})
            if not np.isfinite(log["loss"]):
                raise HashbenchError(f"{label}: the loss became {log['loss']} in epoch {epoch + 1}; lower train.lr")
            logs.append(log)
            if validate is not None and is_main and ((epoch + 1) % every == 0 or epoch + 1 == epochs):
                model.eval()
                with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
                    log["val"] = float(validate(model))
                net.train()
                if best is None or log["val"] > best["value"]:
                    best = dict(value=log["val"], epoch=epoch + 1, model=_cpu_copy(model.state_dict()),
                                method=_cpu_copy(method.state_dict()))
            if checkpoint is not None:
                rng = rng_state(sampler_generator)
                rngs = world.all_gather_object(rng) if distributed else [rng]
                if is_main:
                    save_checkpoint(checkpoint, dict(
                        format=FORMAT, fingerprint=fp, epoch=epoch + 1, model=model.state_dict(),
                        method=method.state_dict(), optimizer=wrapper.state_dict(),
                        scheduler=sched.state_dict(), logs=logs, rng=rngs,
                        **({"best": best} if best is not None else {})))
                if distributed:
                    world.barrier()
            if is_main:
                if log_to is not None:
                    log_to.epoch(epoch + 1, epoch_values(log, optimizer))
                extra = "".join(f" {k} {log[k]:.4g}" for k in terms)
                val = f" val {log['val']:.4f}" if "val" in log else ""
                progress.advance(status=f"loss {log['loss']:.4f}{extra}{val} ({log['seconds']:.1f}s)")
    if best is not None:
        model.load_state_dict(best["model"])
        method.load_state_dict(best["method"])
        logs = [dict(log, selected=True) if log["epoch"] == best["epoch"] else log for log in logs]
    return logs
