"""Optimiser, parameter groups and learning-rate schedule of deep training.

Parameter groups follow mmengine's ``paramwise_cfg.custom_keys``: a method's ``lr_mult`` maps
name patterns to multipliers, ``{"head.final.weight": 10, "head.lower": 2.5}``; a parameter takes
the setting of the *longest* pattern that is a substring of its full name (ties: the pattern
listed first), and ×1 when none matches. A setting is a number (the learning-rate multiplier) or
``dict(lr_mult=..., decay_mult=...)``. Full names are those of the network —
``backbone.<timm name>``, ``head.final.weight``, ``head.final.bias``, ``head.lower.weight`` — and
of the method's own parameters, ``method.<name>`` (e.g. ``method.loss.centres``).

The parameter update goes through mmengine's optimizer wrappers: ``OptimWrapper`` for fp32,
``AmpOptimWrapper`` for bf16/fp16 on CUDA (autocast + GradScaler).
"""
from __future__ import annotations

import warnings
from typing import Iterable

import numpy as np
import torch

from hashbench.errors import HashbenchError

OPTIMIZERS = ("sgd", "adamw")
BACKBONE = "backbone."


def _setting(value, pattern: str) -> tuple[float, float]:
    if isinstance(value, dict):
        unknown = set(value) - {"lr_mult", "decay_mult"}
        if unknown:
            raise HashbenchError(f"lr_mult[{pattern!r}] has unknown key {sorted(unknown)[0]!r}; valid: "
                                 "lr_mult, decay_mult")
        return float(value.get("lr_mult", 1.0)), float(value.get("decay_mult", 1.0))
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise HashbenchError(f"lr_mult[{pattern!r}] must be a number or dict(lr_mult=..., decay_mult=...); "
                             f"got {value!r}")
    return float(value), 1.0


def param_groups(named: Iterable[tuple[str, torch.nn.Parameter]], lr: float, weight_decay: float,
                 lr_mult: dict | None = None) -> list[dict]:
    """Optimizer groups of the trainable parameters in ``named``: one per matched pattern (and one
    ``default``), each split into the backbone's parameters and the others (``outside`` — whose
    rate a method's ``head_lr_drop`` lowers). Groups carry ``name``, ``lr``, ``weight_decay``."""
    patterns = {str(k): _setting(v, str(k)) for k, v in (lr_mult or {}).items()}
    by_length = sorted(patterns, key=len, reverse=True)  # stable: equal lengths keep their order
    groups: dict[tuple[str, bool], dict] = {}
    used = set()
    for name, p in named:
        if not p.requires_grad:
            continue
        pattern = next((k for k in by_length if k in name), None)
        used.add(pattern)
        lr_m, decay_m = patterns.get(pattern, (1.0, 1.0))
        outside = not name.startswith(BACKBONE)
        key = (pattern or "default", outside)
        if key not in groups:
            label = pattern or ("backbone" if not outside else "default")
            groups[key] = dict(params=[], lr=lr * lr_m, weight_decay=weight_decay * decay_m,
                               name=label, outside=outside)
        groups[key]["params"].append(p)
    unused = [k for k in patterns if k not in used]
    if unused:
        raise HashbenchError(f"lr_mult pattern {unused[0]!r} matches no trainable parameter")
    return list(groups.values())


def build_optimizer(groups: list[dict], cfg: dict, device: torch.device) -> torch.optim.Optimizer:
    """SGD (with ``momentum``) or AdamW over ``groups``, from the resolved ``train`` section."""
    name = cfg["optimizer"]
    # Fused CUDA kernels: one launch per step, and they take the GradScaler's inf check on the
    # device (``_step_supports_amp_scaling``), so an fp16 step does not wait for the host.
    fused = dict(fused=True) if device.type == "cuda" else {}
    clean = [{k: v for k, v in g.items() if k != "outside"} for g in groups]
    if name == "sgd":
        return torch.optim.SGD(clean, lr=cfg["lr"], momentum=cfg["momentum"], **fused)
    if name == "adamw":
        return torch.optim.AdamW(clean, lr=cfg["lr"], **fused)
    raise HashbenchError(f"unknown optimizer {name!r}; valid: {', '.join(OPTIMIZERS)}")


def optim_wrapper(optimizer, precision: str):
    """mmengine's wrapper: ``OptimWrapper`` (fp32) or ``AmpOptimWrapper`` (bf16, fp16 + scaler)."""
    from mmengine.optim import AmpOptimWrapper, OptimWrapper

    if precision == "fp32":
        return OptimWrapper(optimizer)
    with warnings.catch_warnings():  # mmengine 0.10.7 builds torch.cuda.amp.GradScaler (deprecated name)
        warnings.simplefilter("ignore", FutureWarning)
        if precision == "bf16":  # bf16 has fp32's range: no loss scaling, no scaler syncs
            return AmpOptimWrapper(optimizer=optimizer, dtype="bfloat16", loss_scale=dict(enabled=False))
        return AmpOptimWrapper(optimizer=optimizer, dtype="float16", loss_scale="dynamic")


def schedule(optimizer, groups: list[dict], *, cosine: bool, steps: int, drop_at: float | None):
    """Per-group factors: a cosine decay over ``steps`` (``cosine``), times 0.1 for the groups
    outside the backbone once ``drop_at`` of the steps are done (a method's ``head_lr_drop``)."""
    def factor(outside: bool):
        def f(step):
            decay = 0.5 * (1 + np.cos(np.pi * step / max(steps, 1))) if cosine else 1.0
            dropped = outside and drop_at is not None and step >= drop_at * steps
            return float(decay * (0.1 if dropped else 1.0))  # a Python float: lrs stay plain values
        return f

    return torch.optim.lr_scheduler.LambdaLR(optimizer, [factor(g["outside"]) for g in groups])
