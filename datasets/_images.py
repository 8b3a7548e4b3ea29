"""Images on disk: decoding, finding missing and corrupt files, the prepared uint8 cache, and the
split that reads them.

Missing files are found when a dataset is built (one directory listing per folder). Corrupt
files (present, not decodable) are found by a full decode (``hashbench data verify`` /
``prepare``, or ``strict=True``) and remembered in ``scan.tsv`` while the file's size and mtime are
unchanged. An image that only fails while an epoch runs is replaced by a black image, warned about
once and appended to the report, so an epoch never stops halfway.
"""
from __future__ import annotations

import json
import logging
import os
import shutil
import time
from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset

from hashbench.errors import HashbenchError

from ._text import read_text_lines, write_atomic

log = logging.getLogger("hashbench.datasets")

#: How an image becomes an array; recorded in prepared caches so a change invalidates them.
RESIZE_METHOD = "rgb-bilinear-warp/v1"


def load_image(path: str | Path, size: int) -> np.ndarray:
    """Decode an image, convert to RGB and warp it (no crop) to ``size`` × ``size``.

    Returns ``ndarray of shape (3, size, size)``, uint8. Bilinear resampling, as DSRH warps its
    inputs to 224 × 224. Raises whatever the decoder raises for an unreadable file.
    """
    with Image.open(path) as im:
        rgb = im.convert("RGB")
    if rgb.size != (size, size):
        rgb = rgb.resize((size, size), Image.Resampling.BILINEAR)
    return np.ascontiguousarray(np.asarray(rgb, dtype=np.uint8).transpose(2, 0, 1))


def check_image(path: str | Path) -> None:
    """Fully decode an image (raises if it cannot be decoded)."""
    with Image.open(path) as im:
        im.convert("RGB")


def describe_error(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or "unreadable"
    return f"{type(exc).__name__}: {text}"[:200]


def is_file_entry(entry: os.DirEntry) -> bool:
    """``entry.is_file()``, False where asking fails (a symlink loop, a vanished file): one bad
    entry must not stop the listing of its folder."""
    try:
        return entry.is_file()
    except OSError:
        return False


def present_mask(root: Path, rels: Sequence[str]) -> np.ndarray:
    """Which ``root/rel`` files exist, listing each folder once: bool ``ndarray of shape (n,)``.

    An entry that cannot be checked (a symlink loop, no permission) counts as missing; its
    neighbours are unaffected.
    """
    by_dir: dict[str, list[int]] = {}
    for i, rel in enumerate(rels):
        by_dir.setdefault(rel.rpartition("/")[0], []).append(i)
    mask = np.zeros(len(rels), bool)
    for folder, members in by_dir.items():
        names = set()
        try:
            with os.scandir(root / folder if folder else root) as it:
                for entry in it:
                    if is_file_entry(entry):
                        names.add(entry.name)
        except OSError:  # the folder itself is missing or unreadable: its entries are missing
            pass
        for i in members:
            mask[i] = rels[i].rpartition("/")[2] in names
    return mask


class _DecodeJob(Dataset):
    """Decode (``size`` given) or only check (``size=None``) a list of files, never raising."""

    def __init__(self, root: Path, rels: Sequence[str], size: int | None):
        self.root, self.rels, self.size = root, rels, size

    def __len__(self) -> int:
        return len(self.rels)

    def __getitem__(self, i: int):
        path = self.root / self.rels[i]
        try:
            st = os.stat(path)
        except OSError:
            return i, None, "missing", -1, -1
        try:
            if self.size is None:
                check_image(path)
                arr = None
            else:
                arr = torch.from_numpy(load_image(path, self.size))
            return i, arr, "", st.st_size, st.st_mtime_ns
        except Exception as exc:  # noqa: BLE001 - any decoder failure means "corrupt"
            return i, None, describe_error(exc), st.st_size, st.st_mtime_ns


def _as_list(batch):
    return batch


def decode_all(root: Path, rels: Sequence[str], size: int | None, workers: int,
               on_item: Callable[[int, "torch.Tensor | None", str, int, int], None]) -> None:
    """Decode every file in ``worker`` processes and call ``on_item(i, array, error, size, mtime)``.

    ``error`` is ``""`` for a good file; ``array`` is a uint8 (3, size, size) tensor or None.
    """
    if not len(rels):
        return
    loader = DataLoader(_DecodeJob(root, rels, size), batch_size=16, num_workers=max(0, workers),
                        collate_fn=_as_list)
    for batch in loader:
        for item in batch:
            on_item(*item)


def default_workers(n: int) -> int:
    """Worker processes for a decode pass over ``n`` files: none for small trees."""
    return 0 if n < 2000 else min(8, max(1, (os.cpu_count() or 2) - 1))


class ScanLog:
    """Append-only log of full-decode checks, ``scan.tsv`` in the cache dir.

    One line per check: ``relpath <TAB> size <TAB> mtime_ns <TAB> ok|corrupt <TAB> reason``. The last
    line for a path wins, and only while the file keeps that size and mtime.
    """

    def __init__(self, path: Path):
        self.path = path

    def load(self) -> dict[str, tuple[int, int, bool, str]]:
        records: dict[str, tuple[int, int, bool, str]] = {}
        if not self.path.is_file():
            return records
        for line in read_text_lines(self.path):
            parts = line.split("\t")
            if len(parts) < 4:
                continue
            try:
                records[parts[0]] = (int(parts[1]), int(parts[2]), parts[3] == "ok",
                                     parts[4] if len(parts) > 4 else "")
            except ValueError:
                continue
        return records

    def append(self, records: Iterable[tuple[str, int, int, bool, str]]) -> None:
        lines = [f"{rel}\t{size}\t{mtime}\t{'ok' if ok else 'corrupt'}\t"
                 f"{' '.join(reason.split())}\n" for rel, size, mtime, ok, reason in records]
        if lines:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with open(self.path, "a", encoding="utf-8") as f:
                f.write("".join(lines))


def fresh(path: Path, size: int, mtime: int) -> bool:
    try:
        st = os.stat(path)
    except OSError:
        return False
    return st.st_size == size and st.st_mtime_ns == mtime


# --------------------------------------------------------------------------- prepared image cache
def prepared_files(cache_dir: Path, size: int) -> tuple[Path, Path]:
    return cache_dir / f"images-{size}.npy", cache_dir / f"images-{size}.json"


def open_prepared(cache_dir: Path, size: int) -> tuple[Path, dict[str, int], dict[str, str]] | None:
    """A complete prepared cache for ``size``: (array file, row of each path, corrupt paths) or None."""
    array_file, manifest_file = prepared_files(cache_dir, size)
    if not (manifest_file.is_file() and array_file.is_file()):
        return None
    try:
        manifest = json.loads(manifest_file.read_text())
    except (OSError, ValueError):
        return None
    # a damaged or hand-edited manifest (valid JSON of another shape) means no cache, not a crash
    if not isinstance(manifest, dict):
        return None
    if manifest.get("resize") != RESIZE_METHOD or manifest.get("image_size") != size:
        return None
    paths = manifest.get("paths", [])
    corrupt = manifest.get("corrupt", {})
    if not (isinstance(paths, list) and all(isinstance(p, str) for p in paths)
            and isinstance(corrupt, dict)):
        return None
    try:
        shape = np.load(array_file, mmap_mode="r").shape
    except (OSError, ValueError):
        return None
    if shape != (len(paths), 3, size, size):
        return None
    corrupt = {str(k): str(v) for k, v in corrupt.items()}
    # rows of files that failed to decode are black: never serve them (a repaired file is decoded)
    rows = {p: i for i, p in enumerate(paths) if p not in corrupt}
    return array_file, rows, corrupt


def _fill(array_file: Path, root: Path, rels: Sequence[str], size: int, workers: int
          ) -> tuple[dict[str, str], list]:
    """Decode every image into a new .npy at ``array_file``; the corrupt files and scan records.
    The memory map is closed on return, before the caller renames the file."""
    out = np.lib.format.open_memmap(array_file, mode="w+", dtype=np.uint8,
                                    shape=(len(rels), 3, size, size))
    corrupt: dict[str, str] = {}
    records = []

    def keep(i, arr, error, fsize, mtime):
        if error:
            out[i] = 0
            corrupt[rels[i]] = error
        else:
            out[i] = arr.numpy()
        if fsize >= 0:
            records.append((rels[i], fsize, mtime, not error, error))

    decode_all(root, rels, size, workers, keep)
    out.flush()
    return corrupt, records


def prepare_images(cache_dir: Path, root: Path, rels: Sequence[str], size: int, workers: int,
                   dataset: str, scan: ScanLog | None = None) -> dict:
    """Decode and warp every image once into ``images-<size>.npy`` (uint8, (n, 3, size, size)).

    The manifest ``images-<size>.json`` (paths in row order, size, corrupt files) is written last,
    so an interrupted run leaves no cache that would be trusted. Rows of corrupt files are black.
    """
    array_file, manifest_file = prepared_files(cache_dir, size)
    cache_dir.mkdir(parents=True, exist_ok=True)
    need = len(rels) * 3 * size * size
    free = shutil.disk_usage(cache_dir).free
    if need > free:
        raise HashbenchError(f"{dataset}: the prepared cache needs {need / 2**30:.1f} GiB for "
                             f"{len(rels)} images at {size}x{size} but {cache_dir} has "
                             f"{free / 2**30:.1f} GiB free; pass cache_dir= elsewhere")
    manifest_file.unlink(missing_ok=True)
    partial = array_file.with_name(array_file.name + ".partial")
    start = time.perf_counter()
    corrupt, records = _fill(partial, root, rels, size, workers)
    os.replace(partial, array_file)
    if scan is not None:
        scan.append(records)
    seconds = time.perf_counter() - start
    manifest = {"image_size": size, "resize": RESIZE_METHOD, "image_root": str(root),
                "paths": list(rels), "corrupt": corrupt, "seconds": round(seconds, 2),
                "created": time.strftime("%Y-%m-%dT%H:%M:%S")}
    write_atomic(manifest_file, json.dumps(manifest).encode())
    return {"cache": str(array_file), "images": len(rels), "corrupt": len(corrupt),
            "bytes": need, "seconds": seconds}


# --------------------------------------------------------------------------- what a split yields
class ImageSplit(Dataset):
    """Images of one split: items ``(x, y)``, x uint8 (3, S, S), y float32 multi-hot (C,).

    Reads rows of the prepared cache where one exists (``cache_file`` and ``rows``, -1 where a
    path is not cached) and decodes the file otherwise. A file that fails to decode is replaced by
    a black image with a one-line warning and a line in the report (``strict``: raise instead).

    Attributes
    ----------
    labels : ndarray of shape (n, C), uint8
    rel_paths : list of str, relative to ``image_root``
    ids : ndarray of str, shape (n,)
        The items' paths relative to the image root: the same image has the same id in every split.
    """

    def __init__(self, image_root: Path, rel_paths: Sequence[str], labels: np.ndarray, image_size: int,
                 *, cache_file: Path | None = None, rows: np.ndarray | None = None,
                 report: Path | None = None, strict: bool = False, dataset: str = ""):
        self.image_root = Path(image_root)
        self.rel_paths = list(rel_paths)
        self.ids = np.asarray(self.rel_paths, dtype=str)
        self.labels = np.ascontiguousarray(labels, dtype=np.uint8)
        self.image_size = image_size
        self.cache_file = cache_file
        self.rows = rows
        self.report = report
        self.strict = strict
        self.dataset = dataset
        self._targets = torch.from_numpy(self.labels.astype(np.float32))
        self._array = None
        self._failed: set[int] = set()

    def __getstate__(self):  # worker processes open their own memory map
        state = dict(self.__dict__)
        state["_array"] = None
        return state

    def __len__(self) -> int:
        return len(self.rel_paths)

    @property
    def paths(self) -> list[Path]:
        return [self.image_root / r for r in self.rel_paths]

    def __getitem__(self, i: int):
        return torch.from_numpy(self.read(i)), self._targets[i]

    def all_inputs(self) -> np.ndarray:
        """Every image, (n, 3, S, S) uint8."""
        return np.stack([self.read(i) for i in range(len(self))]) if len(self) else \
            np.zeros((0, 3, self.image_size, self.image_size), np.uint8)

    def read(self, i: int) -> np.ndarray:
        """The pixels of item ``i``: uint8 ``ndarray of shape (3, S, S)``."""
        if self.cache_file is not None and self.rows is not None and self.rows[i] >= 0:
            if self._array is None:
                self._array = np.load(self.cache_file, mmap_mode="r")
            return np.array(self._array[self.rows[i]])
        try:
            return load_image(self.image_root / self.rel_paths[i], self.image_size)
        except Exception as exc:  # noqa: BLE001 - one bad file must not end an epoch
            reason = describe_error(exc)
            path = self.image_root / self.rel_paths[i]
            if self.strict:
                raise HashbenchError(f"{self.dataset}: cannot decode {path} ({reason}); strict=true "
                                     "refuses (run `hashbench data verify` to find all such files)")
            if i not in self._failed:
                self._failed.add(i)
                log.warning("%s: cannot decode %s (%s); using a black image%s", self.dataset, path,
                            reason, f", listed in {self.report}" if self.report else "")
                if self.report is not None:
                    try:
                        with open(self.report, "a", encoding="utf-8") as f:
                            f.write(f"corrupt\t{self.rel_paths[i]}\t{reason} (found during reading)\n")
                    except OSError:
                        pass
            return np.zeros((3, self.image_size, self.image_size), np.uint8)
