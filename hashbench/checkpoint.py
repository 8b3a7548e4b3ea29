"""The training checkpoint: its format, atomic saving, safe loading, and the random states in it.

A checkpoint holds only tensors and plain Python values (RNG states included), so it loads with
``torch.load(weights_only=True)`` — torch's default since 2.6 — and nothing in it can run code.
The file is one header line (``HASHBENCH-CHECKPOINT sha256=<hex> bytes=<n>``) followed by
``torch.save``'s bytes, so damage is detected before anything is loaded.
mmengine's own ``CheckpointHook`` resume is not used: 0.10.7 does not pass ``weights_only`` and
fails under torch >= 2.6.

Contents (``FORMAT``): ``format``, ``fingerprint`` (what must match to continue, see
:func:`fingerprint`), ``epoch`` (epochs done), ``model`` and ``method`` (the method's own state:
parameters and buffers such as a memory bank or class centres), ``optimizer``, ``scheduler``,
``logs`` and ``rng`` (one entry per process).
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import random
from pathlib import Path

import numpy as np
import torch

from hashbench.atomic import atomic_write
from hashbench.errors import HashbenchError

FORMAT = "hashbench-train-3"
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


MAGIC = b"HASHBENCH-CHECKPOINT"


class BadCheckpoint(HashbenchError):
    """A checkpoint that cannot be continued from: damaged (its checksum fails), unreadable, of
    another format, or written by another training configuration."""


def save_checkpoint(path: str | os.PathLike, state: dict) -> None:
    """Write ``state`` to ``path`` atomically, behind a one-line header carrying the sha256 of
    the bytes that follow: a reader (or a run killed mid-write) sees the previous checkpoint or
    the new one, never half, and a file damaged later fails its checksum instead of loading.

    ``torch.save`` writes to memory first: a full disk is :func:`hashbench.atomic.disk_full`'s one
    line naming the file and the free space, not torch's zip-writer message.
    """
    buf = io.BytesIO()
    torch.save(state, buf)
    payload = buf.getbuffer()
    header = MAGIC + f" sha256={hashlib.sha256(payload).hexdigest()} bytes={len(payload)}\n".encode()

    def write(tmp):
        with open(tmp, "wb") as f:
            f.write(header)
            f.write(payload)

    atomic_write(Path(path), write)


def load_checkpoint(path: str | os.PathLike) -> dict:
    """Read a checkpoint written by :func:`save_checkpoint`; :class:`BadCheckpoint` (one line
    saying why) for a file that is not one of this format or fails its checksum."""
    try:
        with open(path, "rb") as f:
            header = f.readline(200)
            payload = f.read()
    except OSError as e:
        raise BadCheckpoint(f"checkpoint {str(path)!r} cannot be read ({e.strerror or e})") from None
    fields = dict(part.split(b"=", 1) for part in header.split()[1:] if b"=" in part)
    if not header.startswith(MAGIC + b" ") or b"sha256" not in fields:
        raise BadCheckpoint(f"{str(path)!r} is not a hashbench training checkpoint of this version ({FORMAT})")
    if fields.get(b"bytes") != str(len(payload)).encode() or \
            hashlib.sha256(payload).hexdigest().encode() != fields[b"sha256"]:
        raise BadCheckpoint(f"checkpoint {str(path)!r} is damaged: its contents do not match the sha256 "
                            "written with it")
    try:
        state = torch.load(io.BytesIO(payload), map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any unreadable file gets the same one-line answer
        lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()] or [""]
        why = next((ln for ln in lines if "Unsupported global" in ln), lines[0])
        raise BadCheckpoint(f"checkpoint {str(path)!r} cannot be read ({type(e).__name__}: {why})") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise BadCheckpoint(f"{str(path)!r} is not a hashbench training checkpoint ({FORMAT})")
    return state


def set_aside(path: str | os.PathLike) -> Path:
    """Move an unusable checkpoint to ``<name>.bad`` (kept for inspection, never read again)."""
    bad = Path(f"{path}.bad")
    os.replace(path, bad)
    return bad


def fingerprint(method, model, cfg: dict, seed: int) -> str:
    """What must match for a checkpoint to continue this run (not workers, not the device)."""
    shapes = {k: list(v.shape) for k, v in model.state_dict().items()}
    shapes.update({f"method.{k}": list(v.shape) for k, v in method.state_dict().items()})
    train = {k: cfg.get(k) for k in TRAJECTORY_KEYS}
    if cfg.get("augment", "none") != "none":  # only when set: older checkpoints keep their fingerprint
        train["augment"] = cfg["augment"]
        if cfg.get("augment_on") == "device":  # other draws than the loader's: not the same trajectory
            train["augment_on"] = "device"
    if cfg.get("select"):  # a checkpoint's best epoch was chosen by this (absent: no selection)
        train.update(select=cfg["select"], select_every=cfg.get("select_every"))
    return json.dumps(dict(method=type(method).__name__, n_bits=method.n_bits, seed=seed, train=train, shapes=shapes),
                      sort_keys=True, default=str)
