"""What every dataset provides, declared once: the contract the runner and ``hashbench data`` use.

A dataset registered in ``DATASETS`` is a :class:`HashingDataset`. It has a ``name`` (its
registered name), a ``kind`` and ``class_names``, and answers:

===============================  ===============================================================
``splits()``                      the names of its splits: ``train``, ``query``, ``database``, and
                                  ``val`` where it has one
``get(name)``                     one split (a ``torch.utils.data.Dataset``, see below)
``split_sizes()``                 ``{split: size}`` (``data verify``)
``split_files()``                 where the splits are written (``dir`` and each split's list file
                                  with its sha256), or ``{}`` for splits that are not written
``fingerprint(splits)``           what the data under a run is (:func:`split_digest` of each split):
                                  every record carries it, so a rerun notices changed data
``inventory()``                   counts for ``data verify``: ``dataset``, ``images``, ``labelled``,
                                  ``classes``, ``class_names``, ``missing``, ``corrupt``,
                                  ``usable``, ``published`` (the full distribution's counts), ...
``scan(workers)``                 decode every image to find corrupt files (``data verify``); a
                                  dataset held in memory has nothing to scan
``prepare(workers)``              decode once into the uint8 cache (``data prepare``), or refuse in
                                  one line when that does not apply (``preparable`` is False)
===============================  ===============================================================

A split's items are ``(x, y)``:

- ``x``: for ``kind == "images"`` a ``uint8`` tensor of shape (3, H, W) — normalisation happens on
  the device inside the model, with the backbone's own mean/std; for ``kind == "features"`` a
  ``float32`` vector of shape (D,).
- ``y``: a ``float32`` multi-hot tensor of shape (C,).

and a split also exposes ``labels`` (``ndarray of shape (n, C)``, ``uint8`` — what evaluation
uses without touching the inputs), ``ids`` (one string per item naming the image or row, the same
string for the same item in every split it belongs to: a method can tell which database items it
trained on) and ``all_inputs()`` (every input as one array, for classic methods on raw inputs).
"""
from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from hashbench.errors import HashbenchError

SPLITS = ("train", "query", "database")
KINDS = ("images", "features")


def cache_root() -> Path:
    """Where every generated or derived file is cached (datasets, splits, image and feature caches):
    ``$HASHBENCH_CACHE``, or ``~/.cache/hashbench`` when the variable is unset."""
    env = os.environ.get("HASHBENCH_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "hashbench"


class ArraySplit(Dataset):
    """A split held in memory: ``inputs`` of shape (n, ...), ``labels`` of shape (n, C) and the
    items' ``ids`` (default ``"0"``, ``"1"``, …)."""

    def __init__(self, inputs: np.ndarray, labels: np.ndarray, ids=None):
        if len(inputs) != len(labels):
            raise ValueError(f"{len(inputs)} inputs but {len(labels)} label rows")
        self.inputs = torch.from_numpy(np.ascontiguousarray(inputs))
        self.labels = np.ascontiguousarray(labels, dtype=np.uint8)
        self.ids = np.asarray([str(i) for i in range(len(labels))] if ids is None else ids, dtype=str)
        if len(self.ids) != len(self.labels):
            raise ValueError(f"{len(self.ids)} ids but {len(self.labels)} label rows")
        self._targets = torch.from_numpy(self.labels.astype(np.float32))

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i):
        return self.inputs[i], self._targets[i]

    def all_inputs(self) -> np.ndarray:
        return self.inputs.numpy()


def split_digest(split) -> str:
    """sha256 (hex) of what a split is: its items' ids in order, its labels (dtype, shape, bytes)
    and, for a split held in memory (``inputs``: features, generated images), the inputs too.

    Images read from files are identified by their paths (the ids), not their bytes: an image
    edited in place keeps its digest; one that goes missing or corrupt leaves the split and so
    changes it.
    """
    h = hashlib.sha256()
    labels = np.ascontiguousarray(np.asarray(split.labels))
    h.update(f"labels|{labels.dtype}|{labels.shape}|".encode())
    h.update(labels.tobytes())
    ids = np.asarray(split.ids, dtype=str)
    h.update(f"ids|{len(ids)}|".encode())
    h.update("\n".join(ids.tolist()).encode())
    inputs = getattr(split, "inputs", None)
    if inputs is not None:
        arr = inputs.numpy() if isinstance(inputs, torch.Tensor) else np.asarray(inputs)
        h.update(f"inputs|{arr.dtype}|{arr.shape}|".encode())
        rows = max(1, (64 << 20) // max(1, arr[:1].nbytes))  # hashed in 64 MB slices: no copy of the whole
        for start in range(0, len(arr), rows):
            h.update(np.ascontiguousarray(arr[start:start + rows]).data)
    return h.hexdigest()


class HashingDataset:
    """Base class of every dataset: subclasses set ``name``, ``kind``, ``class_names`` and implement
    :meth:`split` (and :meth:`splits` when they have a ``val`` split); the rest of the contract
    (module docstring) has defaults that fit a dataset held in memory."""

    name = ""
    kind = "images"
    class_names: list[str] = []
    preparable = False  # whether `hashbench data prepare` applies
    published: dict[str, int] = {}

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
                f"{self.name or type(self).__name__} has no split {name!r}; valid: {', '.join(self.splits())}")
        return self.split(name)

    def split_sizes(self) -> dict[str, int]:
        return {s: int(len(self.get(s))) for s in self.splits()}

    def split_files(self) -> dict:
        """``dir`` and ``files`` ({split: {file, count, sha256, path}}) of written split files, or ``{}``."""
        return {}

    def fingerprint(self, splits=SPLITS) -> dict:
        """``{"sha256": ..., "splits": {split: {"n": size, "sha256": digest}}}``: the data a run
        trains and is scored on (:func:`split_digest` of each split, combined in split order)."""
        parts = {s: {"n": int(len(self.get(s))), "sha256": split_digest(self.get(s))} for s in splits}
        whole = hashlib.sha256("|".join(f"{s}:{v['n']}:{v['sha256']}" for s, v in parts.items()).encode())
        return {"sha256": whole.hexdigest(), "splits": parts}

    def inventory(self) -> dict:
        """Counts for ``data verify`` (in-memory data: nothing is missing or corrupt)."""
        labels = [np.asarray(self.get(s).labels) for s in self.splits()]
        rows = sum(len(y) for y in labels)
        return {"dataset": self.name, "kind": self.kind, "images": int(rows),
                "labelled": int(sum(int(y.any(axis=1).sum()) for y in labels)),
                "classes": len(self.class_names), "class_names": list(self.class_names), "missing": 0,
                "corrupt": 0, "usable": int(rows), "report": None, "prepared_cache": None,
                "published": dict(self.published)}

    def scan(self, workers: int | None = None) -> None:
        """Fully decode every image to find corrupt ones; nothing to do for data held in memory."""

    def prepare(self, workers: int | None = None) -> dict:
        """Decode every image once into the prepared cache; refused where that does not apply."""
        raise HashbenchError(f"data prepare: {self.name} is held in memory ({self.kind}), read without decoding "
                             "files; there is nothing to prepare")
