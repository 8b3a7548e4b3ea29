"""Training and encoding: the one loop every deep method shares, and feature extraction.

Nothing here knows a particular method: a :class:`~hashbench.method.DeepMethod` supplies the
relaxation and the loss; the loop supplies data, optimiser, schedule, precision, checkpoints,
distribution over processes and progress.

The parameter update goes through mmengine's optimizer wrappers (``mmengine.optim``):
``OptimWrapper`` for fp32, ``AmpOptimWrapper`` for bf16/fp16 on CUDA (autocast + GradScaler). The
loop itself stays ours: mmengine's ``Runner`` wants a ``BaseModel`` with ``train_step`` and its
own hooks, and its ``CheckpointHook`` resume fails under torch >= 2.6 (``torch.load`` defaults to
``weights_only=True`` there and mmengine 0.10.7 does not pass it). Our checkpoints hold only
tensors and plain Python values, so they load with ``weights_only=True`` (see
:func:`load_checkpoint`).
"""
from __future__ import annotations

import json
import os
import random
import sys
import time
import warnings
from contextlib import nullcontext
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, RandomSampler

from hashbench.errors import HashbenchError
from hashbench.results import atomic_write

PRECISIONS = ("fp32", "bf16", "fp16")
CHECKPOINT_FORMAT = "hashbench-train-1"
# Keys of the ``train`` section that change the training trajectory; a checkpoint written under
# other values of these is refused instead of silently continued.
_TRAJECTORY_KEYS = ("epochs", "batch_size", "optimizer", "lr", "momentum", "weight_decay", "cosine", "precision")


def resolve_device(name: str) -> torch.device:
    """``auto`` → CUDA when available, else CPU; ``cpu``/``cuda``/``cuda:N`` as given."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise HashbenchError("device=cuda was asked for but no CUDA device is available; valid here: auto, cpu")
    try:
        return torch.device(name)
    except RuntimeError:
        raise HashbenchError(f"unknown device {name!r}; valid: auto, cpu, cuda, cuda:N") from None


def seed_everything(seed: int) -> torch.Generator:
    """Seed torch and numpy; returns a generator for data shuffling."""
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)
    return torch.Generator().manual_seed(seed)


def _loader(split, batch_size, *, shuffle, device, generator=None, workers=0, drop_last=False, sampler=None):
    """A DataLoader: pinned memory on CUDA, persistent workers when ``workers > 0``.

    With ``shuffle``, the order comes from ``generator`` alone. Without workers the loader also
    draws its (unused) worker base seed from it, as ``DataLoader(shuffle=True, generator=g)``
    does; with workers that seed comes from a generator of its own, so that the order does not
    depend on how often the (persistent) workers were started — a resumed run shuffles exactly
    like an uninterrupted one.
    """
    loader_generator = generator
    if shuffle and sampler is None:
        sampler = RandomSampler(split, generator=generator)
        if workers > 0:
            loader_generator = torch.Generator().manual_seed(int(generator.initial_seed()) + 1)
    return DataLoader(split, batch_size=batch_size, sampler=sampler, generator=loader_generator,
                      num_workers=workers, pin_memory=device.type == "cuda", drop_last=drop_last,
                      persistent_workers=workers > 0)


class _Indexed(torch.utils.data.Dataset):
    """A split whose items carry their row, ``(x, y, i)``: for losses over the whole training set."""

    def __init__(self, split):
        self.split, self.labels = split, split.labels

    def __len__(self) -> int:
        return len(self.split)

    def __getitem__(self, i):
        return (*self.split[i], i)


def _autocast(device: torch.device, precision: str):
    if precision not in PRECISIONS:
        raise HashbenchError(f"unknown precision {precision!r}; valid: {', '.join(PRECISIONS)}")
    if precision == "fp32" or device.type != "cuda":
        return nullcontext()
    return torch.autocast("cuda", dtype=torch.bfloat16 if precision == "bf16" else torch.float16)


def resolve_precision(precision: str, device: torch.device) -> str:
    """The precision training will use: ``precision`` on CUDA; fp32 elsewhere, with a warning.

    Mixed precision is a CUDA feature here (CPU autocast is slow on most CPUs and fp16 has no
    CPU scaler): asking for bf16/fp16 on the CPU trains in fp32 and says so (``UserWarning``),
    so that one config runs on both kinds of machine. An unknown value is refused.
    """
    if precision not in PRECISIONS:
        raise HashbenchError(f"unknown train.precision {precision!r}; valid: {', '.join(PRECISIONS)}")
    if precision != "fp32" and device.type != "cuda":
        warnings.warn(f"train.precision={precision} applies to CUDA only; training on {device} in fp32",
                      UserWarning, stacklevel=3)
        return "fp32"
    return precision


def duration(seconds: float) -> str:
    """``45s``, ``2m10s``, ``1h05m``."""
    s = int(round(max(seconds, 0)))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{s % 3600 // 60:02d}m"


class Progress:
    """A status line with an ETA (rewritten in place on a terminal; elsewhere one line per update,
    or for :meth:`step` one per tenth of the work and at most one per ``min_interval`` seconds,
    none for work done within ``min_interval``), to stderr."""

    def __init__(self, label: str, stream=None, min_interval: float = 2.0):
        self.label, self.stream = label, stream or sys.stderr
        self.tty = self.stream.isatty()
        self.min_interval = min_interval
        self.t0, self._tenth, self._printed = time.perf_counter(), -1, False
        self._last = self.t0

    def eta(self, done: int, total: int) -> str:
        """``ETA 2m10s`` from the mean time of the ``done`` units so far ('' when finished)."""
        if done <= 0 or done >= total:
            return ""
        return f"ETA {duration((time.perf_counter() - self.t0) / done * (total - done))}"

    def update(self, text: str, final: bool = False):
        end = "\n" if (final or not self.tty) else ""
        self.stream.write(("\r\033[K" if self.tty else "") + f"{self.label} {text}" + end)
        self.stream.flush()

    def step(self, done: int, total: int, what: str) -> None:
        """``label what done/total, ETA ...``; off a terminal only at each tenth of ``total``, not
        within ``min_interval`` s of the start or of the last line, and the last line only when an
        earlier one was written: a log gets nothing from a pass that takes less than that."""
        tenth, now = done * 10 // max(total, 1), time.perf_counter()
        finished = done >= total
        if self.tty or (finished and self._printed) or (
                not finished and tenth != self._tenth and now - self._last >= self.min_interval):
            self._tenth, self._last, self._printed = tenth, now, True
            self.update(f"{what} {done}/{total} {self.eta(done, total)}".rstrip(), final=finished)


# ---------------------------------------------------------------------------------- optimisation
def _optimizer(groups, cfg: dict, device: torch.device) -> torch.optim.Optimizer:
    name = cfg.get("optimizer", "sgd")
    # Fused CUDA kernels: one launch per step, and they take the GradScaler's inf check on the
    # device (``_step_supports_amp_scaling``), so an fp16 step does not wait for the host.
    fused = dict(fused=True) if device.type == "cuda" else {}
    if name == "sgd":
        return torch.optim.SGD(groups, lr=cfg["lr"], momentum=cfg.get("momentum", 0.9),
                               weight_decay=cfg.get("weight_decay", 5e-4), **fused)
    if name == "adamw":
        return torch.optim.AdamW(groups, lr=cfg["lr"], weight_decay=cfg.get("weight_decay", 5e-4), **fused)
    raise HashbenchError(f"unknown optimizer {name!r}; valid: sgd, adamw")


def _optim_wrapper(optimizer, precision: str):
    """mmengine's wrapper: ``OptimWrapper`` (fp32) or ``AmpOptimWrapper`` (bf16, fp16 + scaler)."""
    from mmengine.optim import AmpOptimWrapper, OptimWrapper

    if precision == "fp32":
        return OptimWrapper(optimizer)
    with warnings.catch_warnings():  # mmengine 0.10.7 builds torch.cuda.amp.GradScaler (deprecated name)
        warnings.simplefilter("ignore", FutureWarning)
        if precision == "bf16":  # bf16 has fp32's range: no loss scaling, no scaler syncs
            return AmpOptimWrapper(optimizer=optimizer, dtype="bfloat16", loss_scale=dict(enabled=False))
        return AmpOptimWrapper(optimizer=optimizer, dtype="float16", loss_scale="dynamic")


def _schedule(optimizer, groups, cfg: dict, steps: int, drop_at: float | None):
    def factor(group_name):
        def f(step):
            cosine = 0.5 * (1 + np.cos(np.pi * step / max(steps, 1))) if cfg.get("cosine", False) else 1.0
            head = group_name != "backbone" and drop_at is not None and step >= drop_at * steps
            return float(cosine * (0.1 if head else 1.0))  # a Python float: lrs stay plain values
        return f

    return torch.optim.lr_scheduler.LambdaLR(optimizer, [factor(g["name"]) for g in groups])


# ---------------------------------------------------------------------------------- checkpoints
def _rng_state(sampler_generator: torch.Generator | None) -> dict:
    """Every random state training consumes, as tensors and plain values (``weights_only``-safe)."""
    np_state = np.random.get_state(legacy=False)
    state = dict(torch=torch.get_rng_state(),
                 numpy=dict(key=torch.from_numpy(np_state["state"]["key"].astype(np.int64)),
                            pos=int(np_state["state"]["pos"]), has_gauss=int(np_state["has_gauss"]),
                            gauss=float(np_state["gauss"])),
                 python=random.getstate())
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    if sampler_generator is not None:
        state["sampler"] = sampler_generator.get_state()
    return state


def _set_rng_state(state: dict, sampler_generator: torch.Generator | None) -> None:
    torch.set_rng_state(state["torch"])
    np.random.set_state(dict(bit_generator="MT19937",
                             state=dict(key=state["numpy"]["key"].numpy().astype(np.uint32),
                                        pos=state["numpy"]["pos"]),
                             has_gauss=state["numpy"]["has_gauss"], gauss=state["numpy"]["gauss"]))
    random.setstate(_as_tuples(state["python"]))
    if "cuda" in state and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(state["cuda"])
    if sampler_generator is not None and "sampler" in state:
        sampler_generator.set_state(state["sampler"])


def _as_tuples(x):
    return tuple(_as_tuples(v) for v in x) if isinstance(x, (list, tuple)) else x


def save_checkpoint(path: str | os.PathLike, state: dict) -> None:
    """Write ``state`` to ``path`` atomically: a temporary file beside it, then ``os.replace``.

    A reader (or a run killed mid-write) sees the previous checkpoint or the new one, never half.
    """
    atomic_write(Path(path), lambda tmp: torch.save(state, tmp))


def load_checkpoint(path: str | os.PathLike) -> dict:
    """Read a checkpoint written by :func:`train_deep`, with ``torch.load(weights_only=True)``.

    The file holds only tensors and plain Python values (RNG states included), so the safe
    loader — torch's default since 2.6 — reads it; nothing in it can run code. A file that is
    not such a checkpoint is refused in one line.
    """
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any unreadable file gets the same one-line answer
        lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()] or [""]
        why = next((ln for ln in lines if "Unsupported global" in ln), lines[0])
        raise HashbenchError(f"checkpoint {str(path)!r} cannot be read ({type(e).__name__}: {why}); "
                             "delete it to train from scratch") from None
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise HashbenchError(f"{str(path)!r} is not a hashbench training checkpoint ({CHECKPOINT_FORMAT}); "
                             "delete it to train from scratch")
    return state


def _fingerprint(method, model, cfg: dict, seed: int) -> str:
    """What must match for a checkpoint to continue this run (not workers, not the device)."""
    shapes = {k: list(v.shape) for k, v in model.state_dict().items()}
    return json.dumps(dict(method=type(method).__name__, n_bits=getattr(method, "n_bits", None), seed=seed,
                           train={k: cfg.get(k) for k in _TRAJECTORY_KEYS}, shapes=shapes),
                      sort_keys=True, default=str)


# ---------------------------------------------------------------------------------- training
def train_deep(method, model, split, cfg: dict, device: torch.device, seed: int, label: str = "", *,
               checkpoint: str | os.PathLike | None = None, world=None) -> list[dict]:
    """Train ``model`` (a :class:`~hashbench.model.DeepHasher`) with ``method``'s loss on ``split``.

    Parameters
    ----------
    cfg : dict
        The ``train`` section: ``epochs``, ``batch_size`` (the global batch: split over the
        processes when distributed), ``lr``, ``momentum``, ``weight_decay``, ``optimizer``
        (sgd|adamw), ``cosine``, ``precision`` (fp32|bf16|fp16; CUDA only — on the CPU bf16/fp16
        train in fp32 with a warning), ``channels_last`` (default: on for CUDA), ``workers``
        (DataLoader worker processes; pinned memory on CUDA), ``sync_bn`` (distributed CUDA runs:
        BatchNorm statistics over the global batch; default true).
    checkpoint : path or None
        After every epoch the full training state (model, optimiser, schedule, loss scaler,
        epoch, logs, RNG states) is written there atomically; if the file exists at the start,
        training continues after its last epoch — on the CPU with the same final weights as an
        uninterrupted run. A checkpoint of another configuration is refused.
    world : :class:`hashbench.distributed.World` or None
        When it spans several processes: the data is sharded with a seeded
        ``DistributedSampler``, the model wrapped in DDP, and the loss computed on the *global*
        batch (relaxed codes and labels gathered from every process), so that the update equals
        one process's update on the same global batch.

    Returns the per-epoch logs: ``epoch``, ``loss``, ``seconds`` and the loss's named terms.
    The training step never waits for the device: logged values are summed on the device and
    read once per epoch.
    """
    distributed = world is not None and world.world_size > 1
    is_main = world is None or world.is_main
    generator = seed_everything(seed)
    epochs, batch = int(cfg["epochs"]), int(cfg["batch_size"])
    if len(split) < 2:
        raise HashbenchError(f"the training split has {len(split)} items; at least 2 are needed")
    batch = min(batch, len(split))
    workers = int(cfg.get("workers", 0))
    precision = resolve_precision(cfg.get("precision", "fp32"), device)
    channels_last = bool(cfg.get("channels_last", device.type == "cuda"))

    sampled = getattr(method, "sampler", "in_batch") == "released"
    indexed = getattr(method.loss, "needs_index", False)  # a loss over the whole training set (DPSH's pairs)
    if indexed:
        if sampled:
            raise HashbenchError(f"{type(method).__name__}: a loss over the whole training set cannot take "
                                 "the released sampler's items")
        method.loss.bind(split.labels, method.n_bits)  # every process keeps the same bank: it sees the global batch
        split = _Indexed(split)
    if sampled:
        # Released-code triplets: each item is (anchor, partners...) drawn from the whole split.
        from hashbench.samplers import EpochKeys, ReleasedTripletSampler

        split = ReleasedTripletSampler(split, seed=seed, balance_count=getattr(method, "balance_count", 3000))
        # distributed: every process draws the same key order (same seed) and takes its slice of
        # each global batch; the loss below sees the gathered global batch
        replicas = world.world_size if distributed else 1
        sampler = EpochKeys(len(split), generator, rank=world.rank if distributed else 0, replicas=replicas,
                            batch=batch)
        loader = _loader(split, batch // replicas, shuffle=False, sampler=sampler, device=device, workers=workers,
                         drop_last=distributed or len(split) >= batch)
        sampler_generator = generator
    elif distributed:
        from torch.utils.data.distributed import DistributedSampler

        if batch % world.world_size:
            raise HashbenchError(f"train.batch_size {batch} must be divisible by the {world.world_size} "
                                 "processes (it is the global batch)")
        sampler = DistributedSampler(split, num_replicas=world.world_size, rank=world.rank, shuffle=True,
                                     seed=seed, drop_last=True)
        loader = _loader(split, batch // world.world_size, shuffle=False, sampler=sampler, device=device,
                         generator=torch.Generator().manual_seed(seed + world.rank), workers=workers,
                         drop_last=True)
        sampler_generator = None  # the order is a function of (seed, epoch): set_epoch
    else:
        sampler = None
        loader = _loader(split, batch, shuffle=True, device=device, generator=generator, workers=workers,
                         drop_last=True)
        sampler_generator = generator

    model.to(device)
    if indexed:
        method.loss.to(device)  # its bank
    if channels_last:
        model.to(memory_format=torch.channels_last)
    groups = model.param_groups(float(cfg["lr"]), method.lr_mult)
    optimizer = _optimizer(groups, cfg, device)
    wrapper = _optim_wrapper(optimizer, precision)
    steps = epochs * len(loader)
    sched = _schedule(optimizer, groups, cfg, steps, method.head_lr_drop)

    logs, start = [], 0
    fingerprint = _fingerprint(method, model, {**cfg, "precision": precision}, seed)
    if checkpoint is not None and os.path.exists(checkpoint):
        state = load_checkpoint(checkpoint)
        if state["fingerprint"] != fingerprint:
            raise HashbenchError(f"checkpoint {str(checkpoint)!r} was written by another training configuration "
                                 "(method, code length, seed, train.* or model); delete it to train from scratch")
        model.load_state_dict(state["model"])
        if indexed:
            method.loss.load_state_dict(state["loss"])
        kernels = [{k: g[k] for k in ("fused", "foreach") if k in g} for g in optimizer.param_groups]
        wrapper.load_state_dict(state["optimizer"])
        for group, flags in zip(optimizer.param_groups, kernels):  # this device's kernels, not the writer's
            group.update(flags)
        sched.load_state_dict(state["scheduler"])
        rngs = state["rng"]
        _set_rng_state(rngs[world.rank] if distributed and len(rngs) == world.world_size else rngs[0],
                       sampler_generator)
        logs, start = list(state["logs"]), int(state["epoch"])

    net = model
    if distributed:
        if device.type == "cuda" and cfg.get("sync_bn", True):
            net = torch.nn.SyncBatchNorm.convert_sync_batchnorm(net)
        net = torch.nn.parallel.DistributedDataParallel(
            net, device_ids=[device.index] if device.type == "cuda" else None)
    net.train()
    progress, step = Progress(label), start * len(loader)
    for epoch in range(start, epochs):
        if sampler is not None:
            sampler.set_epoch(epoch)
        t0, total, terms = time.perf_counter(), torch.zeros((), device=device), {}
        for x, y, *extra in loader:
            if sampled:  # (B, 4, ...) slots → one (4B, ...) batch through the network
                x, y = x.flatten(0, 1), y.flatten(0, 1)
            x = x.to(device, non_blocking=True,
                     memory_format=torch.channels_last if channels_last and x.ndim == 4 else torch.preserve_format)
            y = y.to(device, non_blocking=True)
            with wrapper.optim_context(net):  # autocast for bf16/fp16; nothing for fp32
                z = net(x)
            codes = method.relax(z.float(), step / max(steps, 1))
            # the items' training-set rows (indexed) or their triplets' weights (sampled)
            item = extra[0].to(device, non_blocking=True) if indexed or sampled else None
            if distributed:
                # The loss sees the global batch. Every process computes the same loss L; the
                # gather's backward sums the W processes' (equal) gradients for each local code,
                # and DDP averages the parameter gradients over W: the two factors cancel, and the
                # update is one process's update on the global batch (tests/test_distributed.py).
                codes, y, *rows = world.gather_batch(codes, y, *([] if item is None else [item]))
                item = rows[0] if rows else None
            if sampled:
                out = method.loss.sampled(codes.view(len(item), 4, -1), item)
            elif indexed:
                out = method.loss(codes, y, index=item)
            else:
                out = method.loss(codes, y)
            wrapper.update_params(out["loss"])
            sched.step()
            step += 1
            total += out["loss"].detach()  # stays on the device: no sync inside the step
            for k, v in out.items():
                if k != "loss":
                    terms[k] = terms.get(k, 0.0) + v
        n = max(len(loader), 1)
        log = dict(epoch=epoch + 1, loss=float(total) / n, seconds=time.perf_counter() - t0,
                   **{k: float(v) / n for k, v in terms.items()})
        if not np.isfinite(log["loss"]):
            raise HashbenchError(f"{label}: the loss became {log['loss']} in epoch {epoch + 1}; lower train.lr")
        logs.append(log)
        if checkpoint is not None:
            rng = _rng_state(sampler_generator)
            rngs = world.all_gather_object(rng) if distributed else [rng]
            if is_main:
                save_checkpoint(checkpoint, dict(
                    format=CHECKPOINT_FORMAT, fingerprint=fingerprint, epoch=epoch + 1, model=model.state_dict(),
                    optimizer=wrapper.state_dict(), scheduler=sched.state_dict(), logs=logs, rng=rngs,
                    **({"loss": method.loss.state_dict()} if indexed else {})))
            if distributed:
                world.barrier()
        if is_main:
            extra = " ".join(f"{k} {log[k]:.4g}" for k in terms)
            eta = progress.eta(epoch + 1 - start, epochs - start)
            progress.update(f"epoch {epoch + 1}/{epochs} loss {log['loss']:.4f} {extra} ({log['seconds']:.1f}s"
                            f"{', ' + eta if eta else ''})",
                            final=epoch + 1 == epochs)
    return logs


@torch.no_grad()
def encode_deep(model, split, device: torch.device, batch_size: int = 256, precision: str = "fp32") -> np.ndarray:
    """Binary codes of every item of ``split``: ``uint8`` (n, K), bit = 1 where z > 0."""
    model.to(device).eval()
    codes = []
    for x, _ in _loader(split, batch_size, shuffle=False, device=device):
        with _autocast(device, precision):
            z = model(x.to(device, non_blocking=True))
        codes.append((z > 0).to(torch.uint8))
    return torch.cat(codes).cpu().numpy()


@torch.no_grad()
def extract_features(backbone, split, device: torch.device, batch_size: int = 256, *, bypass: bool = False,
                     label: str = "features") -> np.ndarray:
    """Frozen-backbone features of every item: ``float32`` (n, D) (final ⊕ lower with ``bypass``)."""
    from hashbench.model import DeepHasher

    net = DeepHasher(backbone, 1).to(device).eval()
    feats = []
    loader = _loader(split, batch_size, shuffle=False, device=device)
    progress = Progress(label)
    for i, (x, _) in enumerate(loader, 1):
        final, lower = backbone(net.normalize(x.to(device, non_blocking=True)))
        feats.append(torch.cat([final, lower], 1) if bypass else final)
        progress.step(i, len(loader), "extracting batch")
    return torch.cat(feats).float().cpu().numpy()
