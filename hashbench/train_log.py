"""Training curves where people look for them (``train.log``): TensorBoard event files or a wandb run.

A log gets one call per epoch, ``epoch(n, values)``, with the epoch's mean loss and its named
terms, the learning rate of every optimiser group at the epoch's end, the epoch's seconds and,
with model selection (``train.select``), the validation score ``val``.
Both libraries are optional extras; :func:`require` says which one is missing before any work.
"""
from __future__ import annotations

import importlib
import json
import os
from pathlib import Path

from hashbench.errors import HashbenchError

INSTALL = {"tensorboard": "pip install 'hashbench[tensorboard]' (the tensorboard package)",
           "wandb": "pip install 'hashbench[wandb]' (the wandb package)"}


def require(kind: str) -> None:
    """Refuse ``train.log=kind`` in one line when its library is not installed."""
    if kind == "none":
        return
    try:
        importlib.import_module("torch.utils.tensorboard" if kind == "tensorboard" else "wandb")
    except ImportError:
        raise HashbenchError(f"train.log={kind} needs {INSTALL[kind]}, which is not installed; "
                             "or use train.log=none") from None


class TensorBoardLog:
    """Scalars ``loss``, ``terms/<term>``, ``lr/<group>``, ``seconds`` (and ``val``) per epoch in ``directory``;
    the run's config as text. A resumed run adds an event file to the same folder."""

    def __init__(self, directory: Path, config: dict):
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(log_dir=str(directory))
        self.writer.add_text("config", f"```\n{json.dumps(config, indent=1, sort_keys=True, default=str)}\n```")

    def epoch(self, epoch: int, values: dict[str, float]) -> None:
        for k, v in values.items():
            self.writer.add_scalar(k, v, epoch)
        self.writer.flush()  # a killed run keeps its curve up to the last epoch

    def close(self) -> None:
        self.writer.close()


def wandb_mode() -> str:
    """``WANDB_MODE`` when set; ``online`` when an API key is in the environment; else ``offline``
    (nothing leaves the machine unless the user set wandb up)."""
    if os.environ.get("WANDB_MODE"):
        return os.environ["WANDB_MODE"]
    return "online" if os.environ.get("WANDB_API_KEY") else "offline"


class WandbLog:
    """One wandb run per hashbench run, in project ``WANDB_PROJECT`` (default ``hashbench``), its files
    under ``directory``; the same values as :class:`TensorBoardLog`, with ``epoch`` as the step."""

    def __init__(self, directory: Path, name: str, config: dict):
        import wandb

        directory.mkdir(parents=True, exist_ok=True)
        self.run = wandb.init(project=os.environ.get("WANDB_PROJECT", "hashbench"), name=name, dir=str(directory),
                              config=config, mode=wandb_mode())

    def epoch(self, epoch: int, values: dict[str, float]) -> None:
        self.run.log({**values, "epoch": epoch}, step=epoch)

    def close(self) -> None:
        self.run.finish()


def open_log(kind: str, out: Path, name: str, config: dict):
    """The log of one run (``name`` e.g. ``dsrh_32bits_seed0_1a2b3c4d``) under ``out/logs``, or None."""
    if kind == "none":
        return None
    require(kind)
    logs = Path(out) / "logs"
    if kind == "tensorboard":
        return TensorBoardLog(logs / name, config)
    return WandbLog(logs / "wandb", name, config)


def epoch_values(log: dict, optimizer) -> dict[str, float]:
    """What a log records of one epoch: from train's per-epoch ``log`` and the optimiser's groups
    (a group name shared by several groups gets ``#2``, ``#3``...)."""
    values = {k: log[k] for k in ("loss", "seconds", "val") if k in log}
    values.update({f"terms/{k}": v for k, v in log.items() if k not in ("epoch", "loss", "seconds", "val", "selected")})
    seen: dict[str, int] = {}
    for group in optimizer.param_groups:
        name = str(group.get("name", "group"))
        seen[name] = seen.get(name, 0) + 1
        values[f"lr/{name}" + (f"#{seen[name]}" if seen[name] > 1 else "")] = float(group["lr"])
    return values
