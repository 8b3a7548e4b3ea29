"""Precomputed features and labels, for the classic baselines and frozen-backbone heads.

Accepted layouts (``data_root`` is a file or a folder):

- one ``.npz`` or ``.mat`` file holding, for each split, ``<split>_features`` and
  ``<split>_labels`` (the names are templates: ``feature_key``, ``label_key``);
- a folder with ``<split>_features.npy`` and ``<split>_labels.npy`` (same templates), or with one
  ``<split>.npz`` / ``<split>.mat`` per split holding ``features`` and ``labels``.

Splits ``train``, ``query`` and ``database`` are required, ``val`` optional (else ``n_val`` rows
can be carved out of ``train`` with ``seed``; default 0). Features are a matrix (n, D), cast to
float32. Labels are either multi-hot 0/1 (n, C) or class ids (n,) or (n, 1), which become one-hot
columns in sorted order of the ids found in all splits. MATLAB v7.3 files are HDF5, which
``scipy.io.loadmat`` cannot read: re-save them with ``-v7`` or as ``.npz``.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from hashbench.errors import HashbenchError
from hashbench.params import Interval
from hashbench.registry import DATASETS

from ._splits import carve_val
from ._text import parse_class_names
from .base import SPLITS, ArraySplit, HashingDataset

ALL_SPLITS = SPLITS + ("val",)


def _load_mapping(path: Path) -> dict[str, np.ndarray]:
    """Arrays of an ``.npz`` or ``.mat`` file by name."""
    if path.suffix == ".npz":
        try:
            with np.load(path, allow_pickle=False) as z:
                return {k: z[k] for k in z.files}
        except (OSError, ValueError) as exc:
            raise HashbenchError(f"features: cannot read {path}: {exc}") from None
    if path.suffix == ".mat":
        from scipy.io import loadmat
        try:
            data = loadmat(str(path))
        except NotImplementedError:
            raise HashbenchError(f"features: {path} is a MATLAB v7.3 (HDF5) file, which scipy cannot "
                                 "read; re-save it with -v7 or as .npz") from None
        except (OSError, ValueError) as exc:
            raise HashbenchError(f"features: cannot read {path}: {exc}") from None
        return {k: v for k, v in data.items() if not k.startswith("__")}
    raise HashbenchError(f"features: {path} should be a .npz or .mat file (or a folder of .npy files)")


@DATASETS.register_module(name="features")
class Features(HashingDataset):
    """Precomputed feature vectors with multi-hot labels (``.npy`` / ``.npz`` / ``.mat``).

    Parameters
    ----------
    data_root : str or Path
        A ``.npz`` / ``.mat`` file or a folder (see the module docstring).
    feature_key, label_key : str
        Array names, ``{split}`` replaced by the split name.
    n_val : int
        Rows carved out of ``train`` as a validation split when the data has no ``val``.
    seed : int
        Seed of that carving.
    class_names : list of str or str, optional
        Column names (list or comma-separated); default from the class ids, or ``"0"``, ``"1"``, ….
    """

    kind = "features"
    name = "features"
    _parameter_constraints = {"data_root": [Path], "feature_key": [str], "label_key": [str],
                              "n_val": [Interval(int, 0, None)], "seed": [Interval(int, 0, None)],
                              "class_names": [str, list, None]}

    def __init__(self, data_root, *, feature_key: str = "{split}_features",
                 label_key: str = "{split}_labels", n_val: int = 0, seed: int = 0,
                 class_names=None):
        if data_root is None or str(data_root) == "":
            raise HashbenchError("features: data_root is required (a .npz/.mat file or a folder)")
        self.data_root = Path(data_root).expanduser()
        if not self.data_root.exists():
            raise HashbenchError(f"features: expected a .npz/.mat file or a folder at "
                                 f"{self.data_root}, not found")
        self.feature_key, self.label_key = feature_key, label_key
        self.n_val, self.seed = int(n_val), int(seed)
        raw = self._read()
        labels, names = self._labels(raw)
        self.class_names = names if class_names is None else parse_class_names(class_names, len(names), self.name)
        # (features, labels, ids): a row keeps the id of the split and row it was read from
        self.arrays = {s: (raw[s][0], labels[s], np.array([f"{s}/{i}" for i in range(len(labels[s]))]))
                       for s in raw}
        if self.n_val and "val" not in self.arrays:
            x, y, ids = self.arrays["train"]
            val, rest = carve_val(np.arange(len(x)), self.n_val, self.seed, self.name)
            self.arrays["val"] = (x[val], y[val], ids[val])
            self.arrays["train"] = (x[rest], y[rest], ids[rest])
        self._splits = {}

    # -- reading --------------------------------------------------------------------------------
    def _read(self) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        root = self.data_root
        out: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        if root.is_file():
            data = _load_mapping(root)
            for split in ALL_SPLITS:
                fk, lk = self.feature_key.format(split=split), self.label_key.format(split=split)
                if fk in data or lk in data or split in SPLITS:
                    for key in (fk, lk):
                        if key not in data:
                            raise HashbenchError(f"features: {root} has no array {key!r}; it holds "
                                                 f"{', '.join(sorted(data)) or 'nothing'}")
                    out[split] = (data[fk], data[lk])
            return self._checked(out)
        for split in ALL_SPLITS:
            fk, lk = self.feature_key.format(split=split), self.label_key.format(split=split)
            npy_f, npy_l = root / f"{fk}.npy", root / f"{lk}.npy"
            packed = [root / f"{split}{ext}" for ext in (".npz", ".mat")]
            if npy_f.is_file() or npy_l.is_file():
                for p in (npy_f, npy_l):
                    if not p.is_file():
                        raise HashbenchError(f"features: expected {p} (next to the other {split} "
                                             "file), not found")
                try:
                    out[split] = (np.load(npy_f, allow_pickle=False), np.load(npy_l, allow_pickle=False))
                except (OSError, ValueError) as exc:
                    raise HashbenchError(f"features: cannot read the {split} arrays in {root}: {exc}") from None
            elif any(p.is_file() for p in packed):
                path = next(p for p in packed if p.is_file())
                data = _load_mapping(path)
                for key in ("features", "labels"):
                    if key not in data:
                        raise HashbenchError(f"features: {path} has no array {key!r}; it holds "
                                             f"{', '.join(sorted(data)) or 'nothing'}")
                out[split] = (data["features"], data["labels"])
            elif split in SPLITS:
                raise HashbenchError(f"features: expected the {split} split in {root} as {npy_f.name} + "
                                     f"{npy_l.name}, or {split}.npz / {split}.mat; not found")
        return self._checked(out)

    def _checked(self, out):
        dims = {}
        for split, (x, y) in out.items():
            x = np.asarray(x)
            if x.ndim != 2:
                raise HashbenchError(f"features: {split} features must be a matrix (n, D); got shape "
                                     f"{x.shape}")
            if len(np.asarray(y)) != len(x):
                raise HashbenchError(f"features: {split} has {len(x)} feature rows but "
                                     f"{len(np.asarray(y))} label rows")
            x = x.astype(np.float32, copy=False)
            if not np.isfinite(x).all():
                raise HashbenchError(f"features: {split} features contain NaN or infinite values")
            dims[split] = x.shape[1]
            out[split] = (x, np.asarray(y))
        if len(set(dims.values())) > 1:
            raise HashbenchError("features: splits differ in feature length: "
                                 + ", ".join(f"{k} {v}" for k, v in dims.items()))
        return out

    def _labels(self, raw) -> tuple[dict[str, np.ndarray], list[str]]:
        ys = {s: np.asarray(y) for s, (_, y) in raw.items()}
        ids = all(y.ndim == 1 or (y.ndim == 2 and y.shape[1] == 1) for y in ys.values())
        if ids:
            flat = {s: y.reshape(-1) for s, y in ys.items()}
            for s, y in flat.items():
                if y.dtype.kind == "f" and not np.all(y == np.round(y)):
                    raise HashbenchError(f"features: {s} class ids must be whole numbers")
            values = np.unique(np.concatenate(list(flat.values())))
            out = {s: (y[:, None] == values[None, :]).astype(np.uint8) for s, y in flat.items()}
            names = [str(int(v)) if float(v).is_integer() else str(v) for v in values]
            return out, names
        widths = {y.shape[1] if y.ndim == 2 else -1 for y in ys.values()}
        if len(widths) != 1 or -1 in widths:
            raise HashbenchError("features: labels must be (n, C) multi-hot in every split, or class "
                                 "ids (n,); got " + ", ".join(f"{s} {y.shape}" for s, y in ys.items()))
        out = {}
        for s, y in ys.items():
            if not np.isin(y, (0, 1)).all():
                raise HashbenchError(f"features: {s} labels must be 0/1 multi-hot (n, C) or class ids "
                                     f"(n,); found other values")
            out[s] = y.astype(np.uint8)
        return out, [str(i) for i in range(widths.pop())]

    # -- the HashingDataset contract ------------------------------------------------------------
    def splits(self) -> tuple[str, ...]:
        return SPLITS + (("val",) if "val" in self.arrays else ())

    def split(self, name: str) -> ArraySplit:
        if name not in self._splits:
            x, y, ids = self.arrays[name]
            self._splits[name] = ArraySplit(x, y, ids=ids)
        return self._splits[name]

    def split_sizes(self) -> dict[str, int]:
        return {s: int(len(self.arrays[s][0])) for s in self.splits()}

    def inventory(self) -> dict:
        return {**super().inventory(), "data_root": str(self.data_root),
                "dim": int(next(iter(self.arrays.values()))[0].shape[1])}
