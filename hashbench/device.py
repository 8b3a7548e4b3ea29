"""Where and how precisely a run computes: the device, the seeds, mixed precision."""
from __future__ import annotations

import warnings
from contextlib import nullcontext

import numpy as np
import torch

from hashbench.errors import HashbenchError

PRECISIONS = ("fp32", "bf16", "fp16")


def resolve_device(name: str) -> torch.device:
    """``auto`` → CUDA when available, else CPU; ``cpu``/``cuda``/``cuda:N`` as given."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise HashbenchError("device=cuda was asked for but no CUDA device is available; valid here: auto, cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise HashbenchError(f"unknown device {name!r}; valid: auto, cpu, cuda, cuda:N") from None
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        n = torch.cuda.device_count()
        raise HashbenchError(f"device={name} but this machine shows {n} CUDA device(s); valid: auto, cpu, cuda, "
                             f"cuda:0 to cuda:{n - 1}")
    return device


def seed_everything(seed: int) -> torch.Generator:
    """Seed torch and numpy; returns a generator for data shuffling."""
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)
    return torch.Generator().manual_seed(seed)


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


def autocast(device: torch.device, precision: str):
    """The autocast context of ``precision`` on CUDA; nothing for fp32 or on the CPU."""
    if precision not in PRECISIONS:
        raise HashbenchError(f"unknown precision {precision!r}; valid: {', '.join(PRECISIONS)}")
    if precision == "fp32" or device.type != "cuda":
        return nullcontext()
    return torch.autocast("cuda", dtype=torch.bfloat16 if precision == "bf16" else torch.float16)
