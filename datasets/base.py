"""What every dataset provides: named splits of (input, multi-hot label) pairs.

A dataset registered in ``DATASETS`` is a :class:`HashingDataset`. The runner asks it for the
``train``, ``query`` and ``database`` splits (and ``val`` where the protocol defines one). Each
split is a ``torch.utils.data.Dataset`` whose items are ``(x, y)``:

- ``x``: for image datasets a ``uint8`` tensor of shape (3, H, W) — normalisation happens on the
  device inside the model, with the backbone's own mean/std; for feature datasets a ``float32``
  vector of shape (D,).
- ``y``: a ``float32`` multi-hot tensor of shape (C,).

and which also exposes ``labels``: ``ndarray of shape (n, C)``, ``uint8`` — what evaluation uses
without touching the inputs.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from hashbench.errors import HashbenchError

SPLITS = ("train", "query", "database")


def cache_root() -> Path:
    """Where every generated or derived file is cached (datasets, splits, image and feature caches):
    ``$HASHBENCH_CACHE``, or ``~/.cache/hashbench`` when the variable is unset."""
    env = os.environ.get("HASHBENCH_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "hashbench"


class ArraySplit(Dataset):
    """A split held in memory: ``inputs`` of shape (n, ...) and ``labels`` of shape (n, C)."""

    def __init__(self, inputs: np.ndarray, labels: np.ndarray):
        if len(inputs) != len(labels):
            raise ValueError(f"{len(inputs)} inputs but {len(labels)} label rows")
        self.inputs = torch.from_numpy(np.ascontiguousarray(inputs))
        self.labels = np.ascontiguousarray(labels, dtype=np.uint8)
        self._targets = torch.from_numpy(self.labels.astype(np.float32))

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i):
        return self.inputs[i], self._targets[i]


class HashingDataset:
    """Base class: subclasses fill ``class_names``, ``kind`` and implement :meth:`split`.

    ``kind`` is ``"images"`` (inputs are uint8 (3, H, W) tensors) or ``"features"`` (float vectors).
    """

    kind = "images"
    class_names: list[str] = []

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def split(self, name: str) -> Dataset:
        raise NotImplementedError

    def splits(self) -> tuple[str, ...]:
        """Names of the splits this dataset provides."""
        return SPLITS

    def get(self, name: str) -> Dataset:
        """:meth:`split` with a clear error for a split the dataset does not have."""
        if name not in self.splits():
            raise HashbenchError(
                f"{type(self).__name__} has no split {name!r}; valid: {', '.join(self.splits())}")
        return self.split(name)
