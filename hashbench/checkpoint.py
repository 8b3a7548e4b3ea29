"""The training checkpoint: its format, atomic saving, safe loading, and the random states in it.

A checkpoint holds only tensors and plain Python values (RNG states included), so it loads with
``torch.load(weights_only=True)`` — torch's default since 2.6 — and nothing in it can run code.
mmengine's own ``CheckpointHook`` resume is not used: 0.10.7 does not pass ``weights_only`` and
fails under torch >= 2.6.

Contents (``FORMAT``): ``format``, ``fingerprint`` (what must match to continue, see
:func:`fingerprint`), ``epoch`` (epochs done), ``model`` and ``method`` (the method's own state:
parameters and buffers such as a memory bank or class centres), ``optimizer``, ``scheduler``,
``logs`` and ``rng`` (one entry per process).
"""
from __future__ import annotations

import json
import os
import random
from pathlib import Path

import numpy as np
import torch

from hashbench.atomic import atomic_write
from hashbench.errors import HashbenchError

FORMAT = "hashbench-train-2"
# Keys of the ``train`` section that change the training trajectory; a checkpoint written under
# other values of these is refused instead of silently continued.
TRAJECTORY_KEYS = ("epochs", "batch_size", "optimizer", "lr", "momentum", "weight_decay", "cosine", "precision")


def rng_state(sampler_generator: torch.Generator | None) -> dict:
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


def set_rng_state(state: dict, sampler_generator: torch.Generator | None) -> None:
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
    """Write ``state`` to ``path`` atomically: a reader (or a run killed mid-write) sees the
    previous checkpoint or the new one, never half."""
    atomic_write(Path(path), lambda tmp: torch.save(state, tmp))


def load_checkpoint(path: str | os.PathLike) -> dict:
    """Read a checkpoint written by :func:`hashbench.train.train_deep`; a file that is not one (of
    this format) is refused in one line."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any unreadable file gets the same one-line answer
        lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()] or [""]
        why = next((ln for ln in lines if "Unsupported global" in ln), lines[0])
        raise HashbenchError(f"checkpoint {str(path)!r} cannot be read ({type(e).__name__}: {why}); "
                             "delete it to train from scratch") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise HashbenchError(f"{str(path)!r} is not a hashbench training checkpoint ({FORMAT}); "
                             "delete it to train from scratch")
    return state


def fingerprint(method, model, cfg: dict, seed: int) -> str:
    """What must match for a checkpoint to continue this run (not workers, not the device)."""
    shapes = {k: list(v.shape) for k, v in model.state_dict().items()}
    shapes.update({f"method.{k}": list(v.shape) for k, v in method.state_dict().items()})
    return json.dumps(dict(method=type(method).__name__, n_bits=method.n_bits, seed=seed,
                           train={k: cfg.get(k) for k in TRAJECTORY_KEYS}, shapes=shapes),
                      sort_keys=True, default=str)
