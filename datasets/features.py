"""Precomputed features and labels, for the classic baselines and frozen-backbone heads.

Accepted layouts (``data_root`` is a file or a folder):

- one ``.npz`` or ``.mat`` file holding, for each split, ``<split>_features`` and
  ``<split>_labels`` (the names are templates: ``feature_key``, ``label_key``);
- a folder with ``<split>_features.npy`` and ``<split>_labels.npy`` (same templates), or with one
  ``<split>.npz`` / ``<split>.mat`` per split holding ``features`` and ``labels``.

Splits ``train``, ``query`` and ``database`` are required, ``val`` optional (else ``n_val`` rows
can be carved out of ``train`` with ``seed``; default 0). Features are a matrix (n, D), cast to
float32. Labels are either multi-hot 0/1 (n, C) or class ids (n,) or (n, 1), which become one-hot
columns in sorted order of the ids found in all splits; ids may be numbers or strings (``"cat"``,
``"dog"``), not a mix. MATLAB v7.3 files are HDF5, which ``scipy.io.loadmat`` cannot read: re-save
them with ``-v7`` or as ``.npz``.

Memory: ``.npy`` features are memory-mapped (copy-on-write, so nothing is written back to the
file and torch can wrap them without copying); float32 features are used as they are, other
dtypes are cast to float32 once. Finiteness is checked chunk by chunk, so loading a database costs
no copy of it: at NUS-WIDE size (193,000 x 2,048) a run holds one copy of the features, the file's
pages, not three.
"""
from __future__ import annotations

import mmap
import zipfile
from pathlib import Path

import numpy as np

from hashbench.errors import HashbenchError
from hashbench.params import Interval
from hashbench.registry import DATASETS

from ._splits import carve_val
from ._text import parse_class_names
from .base import SPLITS, ArraySplit, HashingDataset

ALL_SPLITS = SPLITS + ("val",)
_CHUNK_BYTES = 64 << 20  # rows checked (and cast) at a time: memory stays one chunk, not one split
_F32_MAX = float(np.finfo(np.float32).max)
_NPY_MAGIC = b"\x93NUMPY"


def _load_npy(path: Path, what: str, *, mmap: bool) -> np.ndarray:
    """One ``.npy`` array, memory-mapped copy-on-write when ``mmap`` (in memory otherwise)."""
    with open(path, "rb") as f:
        if f.read(len(_NPY_MAGIC)) != _NPY_MAGIC:
            raise HashbenchError(f"features: {path} is not a valid .npy file (no NumPy header); save the "
                                 f"{what} with numpy.save")
    try:
        # "c" rather than "r": torch.from_numpy warns on (and would fault writing to) a read-only
        # map, while copy-on-write pages are still the file's until written, which nothing does
        return np.load(path, mmap_mode="c" if mmap else None, allow_pickle=False)
    except ValueError as exc:
        if mmap and "pickled" not in str(exc):
            return _load_npy(path, what, mmap=False)  # e.g. an object header numpy cannot map
        raise HashbenchError(f"features: cannot read the {what} in {path}: {exc}") from None
    except OSError as exc:
        raise HashbenchError(f"features: cannot read the {what} in {path}: {exc}") from None


def _float32_features(x: np.ndarray, split: str) -> np.ndarray:
    """``x`` (n, D) as float32, checked finite chunk by chunk: ``x`` itself when it is float32."""
    if x.dtype.kind not in "biuf":
        raise HashbenchError(f"features: {split} features must be numbers (float or int); got dtype {x.dtype}")
    out = x if x.dtype == np.float32 else np.empty(x.shape, dtype=np.float32)
    rows = max(1, _CHUNK_BYTES // max(1, x.shape[1] * x.dtype.itemsize))
    for start in range(0, len(x), rows):
        chunk = x[start:start + rows]
        if x.dtype.kind == "f" and chunk.size:
            # max/min propagate NaN and see +-inf without a boolean copy of the chunk
            hi, lo = float(chunk.max()), float(chunk.min())
            if not (np.isfinite(hi) and np.isfinite(lo)):
                bad = start + int(np.flatnonzero(~np.isfinite(chunk).all(axis=1))[0])
                raise HashbenchError(f"features: {split} features contain NaN or infinite values (first in "
                                     f"row {bad}); every value must be finite")
            big = max(abs(hi), abs(lo))
            if big > _F32_MAX:
                raise HashbenchError(f"features: {split} features overflow float32 (largest magnitude "
                                     f"{big:.3g}; float32 holds up to {_F32_MAX:.3g}); rescale them")
        if out is not x:
            out[start:start + rows] = chunk
            _release(x, start, len(chunk))
    return out


def _release(x: np.ndarray, start: int, n: int) -> None:
    """Drop the pages of rows ``start:start + n`` of a memory-mapped ``x`` once they are cast: a
    float64 file cast to float32 then costs the float32 array and one chunk, not the file too.
    The map is copy-on-write and never written, so dropped pages would read back the file."""
    handle = getattr(x, "_mmap", None)
    if handle is None or not hasattr(handle, "madvise") or not hasattr(mmap, "MADV_DONTNEED"):
        return
    row = x.shape[1] * x.dtype.itemsize
    first = x.offset % mmap.ALLOCATIONGRANULARITY + start * row  # where the rows lie in the map
    aligned = first - first % mmap.PAGESIZE
    handle.madvise(mmap.MADV_DONTNEED, aligned, first + n * row - aligned)


def _load_mapping(path: Path) -> dict[str, np.ndarray]:
    """Arrays of an ``.npz`` or ``.mat`` file by name."""
    if path.suffix == ".npz":
        if not zipfile.is_zipfile(path):
            raise HashbenchError(f"features: {path} is not a valid .npz file (not a zip archive of .npy "
                                 "arrays); save it with numpy.savez")
        try:
            with np.load(path, allow_pickle=False) as z:
                return {k: z[k] for k in z.files}
        except (OSError, ValueError, zipfile.BadZipFile) as exc:
            raise HashbenchError(f"features: {path} is not a valid .npz file ({exc}); save it with "
                                 "numpy.savez") from None
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
                out[split] = (_load_npy(npy_f, f"{split} features", mmap=True),
                              _load_npy(npy_l, f"{split} labels", mmap=False))
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
            x = x if isinstance(x, np.memmap) else np.asarray(x)  # a map keeps its handle: see _release
            if x.ndim >= 1 and len(x) == 0:
                raise HashbenchError(f"features: the {split} split is empty (0 rows, features of shape "
                                     f"{x.shape}); every split needs at least one row")
            if x.ndim != 2:
                raise HashbenchError(f"features: {split} features must be a matrix (n, D); got shape "
                                     f"{x.shape}")
            if len(np.asarray(y)) != len(x):
                raise HashbenchError(f"features: {split} has {len(x)} feature rows but "
                                     f"{len(np.asarray(y))} label rows")
            x = np.asarray(_float32_features(x, split))
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
            kinds = {s: "strings" if y.dtype.kind in "US" else "numbers" if y.dtype.kind in "biuf" else str(y.dtype)
                     for s, y in flat.items()}
            if set(kinds.values()) - {"strings", "numbers"} or len(set(kinds.values())) > 1:
                raise HashbenchError("features: class ids must be all numbers or all strings in every split; "
                                     "got " + ", ".join(f"{s} {k}" for s, k in kinds.items()))
            strings = "strings" in kinds.values()
            for s, y in flat.items():
                if y.dtype.kind == "f" and not np.all(y == np.round(y)):
                    raise HashbenchError(f"features: {s} class ids must be whole numbers")
            if strings:  # one dtype for every split, so "cat" of <U3 and of <U5 are one class
                flat = {s: y.astype(str) for s, y in flat.items()}
            values = np.unique(np.concatenate(list(flat.values())))
            out = {s: (y[:, None] == values[None, :]).astype(np.uint8) for s, y in flat.items()}
            names = [str(v) if strings else str(int(v)) if float(v).is_integer() else str(v) for v in values]
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
