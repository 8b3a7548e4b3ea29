"""Training and encoding: the one loop every deep method shares, and feature extraction.

Nothing here knows a particular method: a :class:`~hashbench.method.DeepMethod` supplies the
relaxation and the loss; the loop supplies data, optimiser, schedule, precision and progress.
"""
from __future__ import annotations

import sys
import time
from contextlib import nullcontext

import numpy as np
import torch
from torch.utils.data import DataLoader

from hashbench.errors import HashbenchError

PRECISIONS = ("fp32", "bf16", "fp16")


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


def _loader(split, batch_size, *, shuffle, device, generator=None, workers=0, drop_last=False):
    return DataLoader(split, batch_size=batch_size, shuffle=shuffle, generator=generator,
                      num_workers=workers, pin_memory=device.type == "cuda", drop_last=drop_last,
                      persistent_workers=workers > 0)


def _autocast(device: torch.device, precision: str):
    if precision not in PRECISIONS:
        raise HashbenchError(f"unknown precision {precision!r}; valid: {', '.join(PRECISIONS)}")
    if precision == "fp32" or device.type != "cuda":
        return nullcontext()
    return torch.autocast("cuda", dtype=torch.bfloat16 if precision == "bf16" else torch.float16)


class Progress:
    """One status line per epoch (rewritten in place on a terminal), to stderr."""

    def __init__(self, label: str, stream=None):
        self.label, self.stream = label, stream or sys.stderr
        self.tty = self.stream.isatty()

    def update(self, text: str, final: bool = False):
        end = "\n" if (final or not self.tty) else ""
        self.stream.write(("\r\033[K" if self.tty else "") + f"{self.label} {text}" + end)
        self.stream.flush()


def train_deep(method, model, split, cfg: dict, device: torch.device, seed: int, label: str = "") -> list[dict]:
    """Train ``model`` (a :class:`~hashbench.model.DeepHasher`) with ``method``'s loss on ``split``.

    ``cfg`` is the ``train`` section: epochs, batch_size, lr, momentum, weight_decay, optimizer
    (sgd|adamw), precision (fp32|bf16|fp16, CUDA only), workers. Returns per-epoch logs.
    """
    generator = seed_everything(seed)
    epochs, batch = int(cfg["epochs"]), int(cfg["batch_size"])
    if len(split) < 2:
        raise HashbenchError(f"the training split has {len(split)} items; at least 2 are needed")
    batch = min(batch, len(split))
    loader = _loader(split, batch, shuffle=True, device=device, generator=generator,
                     workers=int(cfg.get("workers", 0)), drop_last=True)
    groups = model.param_groups(float(cfg["lr"]), method.lr_mult)
    name = cfg.get("optimizer", "sgd")
    if name == "sgd":
        opt = torch.optim.SGD(groups, lr=cfg["lr"], momentum=cfg.get("momentum", 0.9),
                              weight_decay=cfg.get("weight_decay", 5e-4))
    elif name == "adamw":
        opt = torch.optim.AdamW(groups, lr=cfg["lr"], weight_decay=cfg.get("weight_decay", 5e-4))
    else:
        raise HashbenchError(f"unknown optimizer {name!r}; valid: sgd, adamw")
    steps = epochs * len(loader)
    drop_at = method.head_lr_drop

    def factor(group_name):
        def f(step):
            cosine = 0.5 * (1 + np.cos(np.pi * step / max(steps, 1))) if cfg.get("cosine", False) else 1.0
            head = group_name != "backbone" and drop_at is not None and step >= drop_at * steps
            return cosine * (0.1 if head else 1.0)
        return f

    sched = torch.optim.lr_scheduler.LambdaLR(opt, [factor(g["name"]) for g in groups])
    precision = cfg.get("precision", "fp32")
    scaler = torch.amp.GradScaler("cuda", enabled=device.type == "cuda" and precision == "fp16")
    model.to(device).train()
    progress, logs, step = Progress(label), [], 0
    for epoch in range(epochs):
        t0, total, terms = time.perf_counter(), torch.zeros((), device=device), {}
        for x, y in loader:
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            with _autocast(device, precision):
                z = model(x)
            out = method.loss(method.relax(z.float(), step / max(steps, 1)), y)
            opt.zero_grad(set_to_none=True)
            scaler.scale(out["loss"]).backward()
            scaler.step(opt)
            scaler.update()
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
        extra = " ".join(f"{k} {log[k]:.4g}" for k in terms)
        progress.update(f"epoch {epoch + 1}/{epochs} loss {log['loss']:.4f} {extra} ({log['seconds']:.1f}s)",
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
def extract_features(backbone, split, device: torch.device, batch_size: int = 256, *, bypass: bool = False) -> np.ndarray:
    """Frozen-backbone features of every item: ``float32`` (n, D) (final ⊕ lower with ``bypass``)."""
    from hashbench.model import DeepHasher

    net = DeepHasher(backbone, 1).to(device).eval()
    feats = []
    for x, _ in _loader(split, batch_size, shuffle=False, device=device):
        final, lower = backbone(net.normalize(x.to(device, non_blocking=True)))
        feats.append(torch.cat([final, lower], 1) if bypass else final)
    return torch.cat(feats).float().cpu().numpy()
