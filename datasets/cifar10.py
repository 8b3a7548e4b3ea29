"""CIFAR-10 as distributed: 60,000 colour images of 32 × 32 pixels, 10 classes, one label each.

Layout under ``data_root`` (the folder holding the unpacked archive, or the batch folder itself)::

    cifar-10-batches-bin/data_batch_1.bin … data_batch_5.bin, test_batch.bin   (preferred: plain binary)
                         batches.meta.txt                                     (the class names)
    cifar-10-batches-py/data_batch_1 … data_batch_5, test_batch, batches.meta  (Python pickles)

A binary batch is 10,000 records of 3,073 bytes: the label (0–9), then the red, green and blue
planes, 32 × 32 each, row by row. A pickled batch is a dict with ``data`` (10,000 × 3,072 uint8, the
same planes) and ``labels``; it is read by an unpickler that admits only what such a file holds
(numpy's array reconstruction, its dtype and ndarray) — a pickle asking for anything else (a
function to call) is refused in one line before it runs. When both folders are there, the binary
one is read.

Items are named ``<batch>/<row>`` (``data_batch_3/17``, ``test_batch/9999``). Protocols (seeded,
written as list files with their sha256 and reused, like the other datasets' splits):

- ``p1``: 1,000 queries (100 per class) and 5,000 training images (500 per class) drawn from all
  60,000; database = the other 59,000, training images included. Val: ``n_val`` database images
  outside the training set.
- ``p2``: queries = the 10,000 official test images; training set = database = the 50,000
  training images. Val: ``n_val`` images carved out of the training set (they stay in the database).

The published tables score mAP over the whole database (``map``); ``configs/datasets/cifar10.py``
sets the tables to it.
"""
from __future__ import annotations

import hashlib
import pickle
from pathlib import Path

import numpy as np

from hashbench.datasets.base import SPLITS, ArraySplit, HashingDataset, cache_root
from hashbench.errors import HashbenchError
from hashbench.params import Flag, Interval, Options
from hashbench.registry import DATASETS

from ._splits import SplitStore, carve_val, per_concept_protocol

BATCHES = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
CLASS_NAMES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
RECORD = 1 + 3 * 32 * 32
PER_BATCH = 10000

# what a CIFAR pickle may ask the unpickler for: numpy's array reconstruction (under numpy 1's and
# 2's names), and the latin-1 text-to-bytes step protocol-2 pickles written by Python 3 use for bytes
ADMITTED = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
            ("numpy", "ndarray"), ("numpy", "dtype"), ("numpy.core.multiarray", "scalar"),
            ("numpy._core.multiarray", "scalar"), ("_codecs", "encode")}


class _BatchUnpickler(pickle.Unpickler):
    def find_class(self, module, name):
        if (module, name) not in ADMITTED:
            raise pickle.UnpicklingError(f"it asks for {module}.{name}")
        if module == "_codecs":
            import codecs

            return codecs.encode
        import numpy._core.multiarray as multiarray

        return getattr(multiarray, name) if module.endswith("multiarray") else getattr(np, name)


def read_pickled_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """(pixels (n, 3, 32, 32) uint8, labels (n,)) of one ``cifar-10-batches-py`` file."""
    try:
        with open(path, "rb") as f:
            batch = _BatchUnpickler(f, encoding="bytes").load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError) as e:
        raise HashbenchError(f"cifar10: {path} refused: {e} (a CIFAR batch holds only numpy arrays, lists and "
                             "dicts; prefer the binary distribution, cifar-10-batches-bin)") from None
    if not isinstance(batch, dict):
        raise HashbenchError(f"cifar10: {path} holds a {type(batch).__name__}, not a batch dict")
    batch = {k.decode() if isinstance(k, bytes) else k: v for k, v in batch.items()}
    if "data" not in batch or "labels" not in batch:
        raise HashbenchError(f"cifar10: {path} has no 'data' and 'labels' (keys: {', '.join(map(str, batch))})")
    data, labels = np.asarray(batch["data"]), np.asarray(batch["labels"], dtype=np.int64)
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != RECORD - 1 or len(data) != len(labels):
        raise HashbenchError(f"cifar10: {path}: data of shape {data.shape} ({data.dtype}) and {len(labels)} labels; "
                             f"expected (n, {RECORD - 1}) uint8 and n labels")
    return data.reshape(-1, 3, 32, 32), labels


def read_binary_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """(pixels (n, 3, 32, 32) uint8, labels (n,)) of one ``cifar-10-batches-bin`` file."""
    raw = np.fromfile(path, dtype=np.uint8)
    if len(raw) == 0 or len(raw) % RECORD:
        raise HashbenchError(f"cifar10: {path} has {len(raw)} bytes, not a whole number of {RECORD}-byte records")
    raw = raw.reshape(-1, RECORD)
    return raw[:, 1:].reshape(-1, 3, 32, 32), raw[:, 0].astype(np.int64)


def find_batches(data_root: Path) -> tuple[Path, str]:
    """The batch folder under (or at) ``data_root`` and its format, ``bin`` or ``py``."""
    for fmt in ("bin", "py"):
        for folder in (data_root / f"cifar-10-batches-{fmt}", data_root):
            if folder.name == f"cifar-10-batches-{fmt}" and folder.is_dir():
                return folder, fmt
    raise HashbenchError(f"cifar10: no cifar-10-batches-bin/ or cifar-10-batches-py/ at or under {data_root}; "
                         "check data_root (the folder of the unpacked archive)")


@DATASETS.register_module(name="cifar10")
class Cifar10(HashingDataset):
    """CIFAR-10 from its distributed batches (binary or pickled); protocols p1 and p2.

    Parameters
    ----------
    data_root : str or Path
        The folder holding ``cifar-10-batches-bin/`` (or ``-py/``), or that folder itself.
    protocol : {"p1", "p2"}
    seed : int
        Seed of the protocol's draws.
    per_concept_query, per_concept_train : int
        ``p1``: queries and training images drawn per class (100 and 500; named as for ``nuswide21``).
    n_val : int
        Validation images (default 0: the protocols have none).
    scale_down : bool
        Shrink the protocol's counts to fit a smaller copy instead of refusing.
    cache_dir : str or None
        Where the split files are written (default: under ``$HASHBENCH_CACHE``).
    """

    name = "cifar10"
    class_names = list(CLASS_NAMES)
    published = {"images": 60000, "classes": 10}
    protocols = {"p1": "100 queries and 500 training images per class; database = all but the queries",
                 "p2": "queries = the 10,000 test images; training set = database = the 50,000 training images"}
    _parameter_constraints = {
        "data_root": [Path], "protocol": [Options(*protocols)], "seed": [Interval(int, 0, None)],
        "per_concept_query": [Interval(int, 1, None)], "per_concept_train": [Interval(int, 1, None)],
        "n_val": [Interval(int, 0, None)], "scale_down": [Flag()], "cache_dir": [str, None],
    }

    def __init__(self, data_root, *, protocol: str = "p1", seed: int = 0, per_concept_query: int = 100,
                 per_concept_train: int = 500, n_val: int = 0, scale_down: bool = False, cache_dir=None):
        if protocol not in self.protocols:
            raise HashbenchError(f"cifar10 has no protocol {protocol!r}; valid: {', '.join(self.protocols)}")
        self.data_root = Path(data_root).expanduser()
        if not self.data_root.is_dir():
            raise HashbenchError(f"cifar10: data_root {self.data_root} is not a folder")
        self.protocol, self.seed, self.n_val, self.scale_down = protocol, int(seed), int(n_val), bool(scale_down)
        self.per_concept_query, self.per_concept_train = int(per_concept_query), int(per_concept_train)
        self.folder, self.format = find_batches(self.data_root)
        self.pixels, self.labels, self.ids, self.batch_of = self._read()
        self.class_names = self._class_names()
        self.onehot = np.eye(10, dtype=np.uint8)[self.labels]
        key = hashlib.sha256(str(self.folder.resolve()).encode()).hexdigest()[:16]
        self.cache_dir = Path(cache_dir).expanduser() if cache_dir else cache_root() / f"cifar10-{key}"
        self.assign, self.meta = self._assignment()

    def _read(self):
        pixels, labels, ids, batch_of = [], [], [], []
        for b, name in enumerate(BATCHES):
            path = self.folder / (f"{name}.bin" if self.format == "bin" else name)
            if not path.is_file():
                raise HashbenchError(f"cifar10: {path} is missing; the {self.format} distribution has "
                                     f"{', '.join(BATCHES)}")
            x, y = read_binary_batch(path) if self.format == "bin" else read_pickled_batch(path)
            if y.min() < 0 or y.max() > 9:
                raise HashbenchError(f"cifar10: {path} has a label {int(y.max() if y.max() > 9 else y.min())}; "
                                     "labels are 0..9")
            pixels.append(x)
            labels.append(y)
            ids += [f"{name}/{i}" for i in range(len(y))]
            batch_of.append(np.full(len(y), b))
        return np.concatenate(pixels), np.concatenate(labels), ids, np.concatenate(batch_of)

    def _class_names(self) -> list[str]:
        meta = self.folder / ("batches.meta.txt" if self.format == "bin" else "batches.meta")
        if not meta.is_file():
            return list(CLASS_NAMES)
        if self.format == "bin":
            names = [ln.strip() for ln in meta.read_text().splitlines() if ln.strip()]
        else:
            with open(meta, "rb") as f:
                try:
                    d = _BatchUnpickler(f, encoding="bytes").load()
                except (pickle.UnpicklingError, EOFError, ValueError) as e:
                    raise HashbenchError(f"cifar10: {meta} refused: {e}") from None
            raw = d.get(b"label_names") or d.get("label_names") or [] if isinstance(d, dict) else []
            names = [n.decode() if isinstance(n, bytes) else str(n) for n in raw]
        if len(names) != 10:
            raise HashbenchError(f"cifar10: {meta} names {len(names)} classes; CIFAR-10 has 10")
        return names

    def _record(self) -> dict:
        return {"dataset": self.name, "protocol": self.protocol, "seed": self.seed, "n_val": self.n_val,
                "scale_down": self.scale_down, "per_concept_query": self.per_concept_query,
                "per_concept_train": self.per_concept_train, "format": self.format,
                "labels_sha256": hashlib.sha256(self.labels.tobytes()).hexdigest(), "n": len(self.labels)}

    def _assignment(self):
        record = self._record()
        store = SplitStore(self.cache_dir)
        loaded = store.load(record, self.ids)
        if loaded is not None:
            return loaded
        everything = np.arange(len(self.labels))
        if self.protocol == "p1":
            assign = per_concept_protocol(everything, self.onehot, self.class_names, per_query=self.per_concept_query,
                                          per_train=self.per_concept_train, n_val=self.n_val, seed=self.seed,
                                          scale_down=self.scale_down, dataset=self.name, protocol=self.protocol)
        else:
            test = self.batch_of == len(BATCHES) - 1
            train = np.flatnonzero(~test)
            assign = {"query": np.flatnonzero(test), "database": train, "train": train}
            if self.n_val:
                assign["val"], assign["train"] = carve_val(train, self.n_val, self.seed, self.name)
        return assign, store.save(record, assign, self.ids, self.onehot, self.folder)

    def splits(self) -> tuple[str, ...]:
        return SPLITS + (("val",) if "val" in self.assign else ())

    def split(self, name: str) -> ArraySplit:
        idx = self.assign[name]
        return ArraySplit(self.pixels[idx], self.onehot[idx], ids=[self.ids[i] for i in idx])

    def split_files(self) -> dict:
        folder = SplitStore(self.cache_dir).root / SplitStore.folder_name(self._record())
        return {"dir": str(folder), "files": {k: dict(v, path=str(folder / v["file"]))
                                              for k, v in self.meta["files"].items()}}

    def inventory(self) -> dict:
        n = len(self.labels)
        return {"dataset": self.name, "kind": self.kind, "images": n, "labelled": n, "classes": 10,
                "class_names": list(self.class_names), "missing": 0, "corrupt": 0, "usable": n, "report": None,
                "prepared_cache": None, "published": dict(self.published), "data_root": str(self.data_root),
                "format": self.format}
