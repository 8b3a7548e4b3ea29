"""Shared machinery of the on-disk loaders: reading, checking, splitting and caching images.

The dataset files (``mirflickr25k``, ``nuswide``, ``listfile``) only parse their own layout into a
:class:`Catalogue`; everything else lives here, once.

Vocabulary
----------
catalogue
    Every image a distribution names, in the distribution's own order (MIRFLICKR: image number;
    NUS-WIDE: line of ``Imagelist.txt``; list files: first appearance), each with a multi-hot
    label row. Paths are ``/``-separated and relative to the *image root*.
pool
    The catalogue entries a protocol may draw from: labelled (where the dataset drops unlabelled
    images), present on disk, and not known to be corrupt.
cache dir
    One folder per (dataset, data root) holding the split list files (``splits/``), the log of
    full-decode checks (``scan.tsv``), the report of bad images (``report-<dataset>.txt``) and
    prepared image arrays (``images-<size>.npy`` + ``.json``). Default:
    ``$HASHBENCH_CACHE/<dataset>/<key>`` (``nuswide`` for both NUS-WIDE datasets), with
    ``HASHBENCH_CACHE`` defaulting to ``~/.cache/hashbench`` and ``<key>`` a hash of the data root.

Bad images
----------
Missing files are found when the dataset is built (one directory listing per folder). Corrupt
files (present, not decodable) are found by a full decode in ``hashbench data verify`` /
``hashbench data prepare`` (or at build time with ``strict=True``) and remembered in ``scan.tsv``
while the file's size and mtime are unchanged. Both are excluded from the pool, listed in
the report and announced in one warning line; ``strict=True`` refuses instead. An image that
only fails while an epoch runs is replaced by a black image, warned about once and appended to the
report, so an epoch never stops halfway.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset

from hashbench.errors import HashbenchError
from hashbench.atomic import atomic_write

from .base import SPLITS, HashingDataset, cache_root

log = logging.getLogger("hashbench.datasets")

#: How an image becomes an array; recorded in prepared caches so a change invalidates them.
RESIZE_METHOD = "rgb-bilinear-warp/v1"


# --------------------------------------------------------------------------- folders and files
def default_cache_dir(dataset: str, *identity: str) -> Path:
    """``<cache_root>/<dataset>/<key>``, ``key`` a short hash of the strings naming the data."""
    key = hashlib.sha256("\0".join(identity).encode()).hexdigest()[:12]
    return cache_root() / dataset / key


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def write_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file, so readers never see half a file."""
    atomic_write(path, lambda tmp: Path(tmp).write_bytes(data))


def missing_file_error(dataset: str, what: str, expected: Path, hint: str = "") -> HashbenchError:
    """The one-line error for a file of the layout that is not where it should be."""
    msg = f"{dataset}: expected {what} at {expected}, not found"
    return HashbenchError(msg + (f"; {hint}" if hint else ""))


def read_text_lines(path: Path) -> list[str]:
    """Lines of a text file with any line ending (LF, CRLF, CR), right-stripped.

    Trailing blank lines (a final newline, or several) are dropped; blank lines inside are kept so
    that line numbers and line-by-line alignment stay exact.
    """
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        text = raw.decode("latin-1")
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    while lines and not lines[-1].strip():
        lines.pop()
    return [line.rstrip() for line in lines]


def read_binary_column(path: Path, dataset: str) -> np.ndarray:
    """A file with one ``0`` or ``1`` per line (any line ending) as a uint8 array of shape (n,)."""
    raw = path.read_bytes().replace(b"\r\n", b"\n").replace(b"\r", b"\n").rstrip(b"\n\t ")
    if not raw:
        return np.zeros(0, np.uint8)
    n = raw.count(b"\n") + 1
    if len(raw) == 2 * n - 1:  # the usual case: exactly one character per line
        buf = np.frombuffer(raw, np.uint8)
        vals = buf[::2] - np.uint8(48)
        if (buf[1::2] == 10).all() and (vals <= 1).all():
            return vals.astype(np.uint8)
    out = np.empty(n, np.uint8)
    for i, line in enumerate(raw.split(b"\n")):
        s = line.strip()
        if s not in (b"0", b"1"):
            raise HashbenchError(
                f"{dataset}: {path} line {i + 1}: expected 0 or 1, got {s[:20].decode(errors='replace')!r}")
        out[i] = s == b"1"
    return out


# --------------------------------------------------------------------------- list files
def normalise_path(path: str, strip_prefix: Sequence[str] = ()) -> str:
    """``/``-separated path with the first matching prefix of ``strip_prefix`` removed."""
    path = path.replace("\\", "/")
    for prefix in strip_prefix:
        prefix = prefix.replace("\\", "/")
        if prefix and path.startswith(prefix):
            path = path[len(prefix):].lstrip("/")
            break
    while path.startswith("./"):
        path = path[2:]
    return path


def parse_list_file(path: Path, dataset: str, strip_prefix: Sequence[str] = ()
                    ) -> tuple[list[str], np.ndarray]:
    """Read the list format ``<path> <0|1> … <0|1>``.

    Returns the normalised paths and labels as ``ndarray of shape (n, C)``, uint8. Every line must
    carry the same number C ≥ 1 of 0/1 labels; a path may not contain spaces. Blank lines are
    skipped.
    """
    paths: list[str] = []
    rows: list[list[str]] = []
    width = None
    for number, line in enumerate(read_text_lines(path), 1):
        parts = line.split()
        if not parts:
            continue
        labels = parts[1:]
        if width is None:
            width = len(labels)
            if width == 0:
                raise HashbenchError(f"{dataset}: {path} line {number} has a path but no labels; "
                                     "expected '<path> <0|1> <0|1> …'")
        if len(labels) != width:
            raise HashbenchError(f"{dataset}: {path} line {number} has {len(labels)} labels, "
                                 f"the first line has {width}")
        if not set(labels) <= {"0", "1"}:
            bad = next(t for t in labels if t not in ("0", "1"))
            raise HashbenchError(f"{dataset}: {path} line {number}: labels must be 0 or 1, got {bad!r}")
        paths.append(normalise_path(parts[0], strip_prefix))
        rows.append(labels)
    if not rows:
        return [], np.zeros((0, 0), np.uint8)
    return paths, np.array(rows).astype(np.uint8)


def format_list_file(paths: Sequence[str], labels: np.ndarray) -> bytes:
    """The list format for ``paths`` and ``labels`` (n, C), LF line endings."""
    digits = np.where(np.asarray(labels) > 0, "1", "0")
    lines = [f"{p} {' '.join(row)}\n" for p, row in zip(paths, digits.tolist())]
    return "".join(lines).encode()


# --------------------------------------------------------------------------- images
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


def present_mask(root: Path, rels: Sequence[str]) -> np.ndarray:
    """Which ``root/rel`` files exist, listing each folder once: bool ``ndarray of shape (n,)``."""
    by_dir: dict[str, list[int]] = {}
    for i, rel in enumerate(rels):
        by_dir.setdefault(rel.rpartition("/")[0], []).append(i)
    mask = np.zeros(len(rels), bool)
    for folder, members in by_dir.items():
        try:
            with os.scandir(root / folder if folder else root) as it:
                names = {e.name for e in it if e.is_file()}
        except OSError:
            continue
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


def _fresh(path: Path, size: int, mtime: int) -> bool:
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
    if manifest.get("resize") != RESIZE_METHOD or manifest.get("image_size") != size:
        return None
    paths = manifest.get("paths", [])
    try:
        shape = np.load(array_file, mmap_mode="r").shape
    except (OSError, ValueError):
        return None
    if shape != (len(paths), 3, size, size):
        return None
    corrupt = dict(manifest.get("corrupt", {}))
    # rows of files that failed to decode are black: never serve them (a repaired file is decoded)
    rows = {p: i for i, p in enumerate(paths) if p not in corrupt}
    return array_file, rows, corrupt


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
    out = np.lib.format.open_memmap(partial, mode="w+", dtype=np.uint8,
                                    shape=(len(rels), 3, size, size))
    corrupt: dict[str, str] = {}
    records = []
    start = time.perf_counter()

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
    del out
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
    """

    def __init__(self, image_root: Path, rel_paths: Sequence[str], labels: np.ndarray, image_size: int,
                 *, cache_file: Path | None = None, rows: np.ndarray | None = None,
                 report: Path | None = None, strict: bool = False, dataset: str = ""):
        self.image_root = Path(image_root)
        self.rel_paths = list(rel_paths)
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


# --------------------------------------------------------------------------- protocols
def _scaled(sizes: dict[str, int], available: int) -> dict[str, int]:
    """Scale requested sizes so that together they use at most half of ``available`` images."""
    total = sum(sizes.values())
    f = min(1.0, 0.5 * available / max(total, 1))
    return {k: (max(1, int(v * f)) if v else 0) for k, v in sizes.items()}


def random_protocol(pool: np.ndarray, *, n_query: int, n_train: int | None, n_val: int, seed: int,
                    scale_down: bool, dataset: str, protocol: str) -> dict[str, np.ndarray]:
    """Seeded random splits of ``pool`` (catalogue indices).

    ``n_train=None`` (DSRH): query = ``n_query`` random images; database = the rest; val =
    ``n_val`` random database images; train = database minus val. Otherwise: train = ``n_train``
    random database images and val = ``n_val`` other database images. Every split is returned in
    catalogue order.
    """
    sizes = {"query": n_query, "val": n_val}
    if n_train is not None:
        sizes["train"] = n_train
    for k, v in sizes.items():
        if v < 0 or int(v) != v:
            raise HashbenchError(f"{dataset}: n_{k} must be a whole number >= 0, got {v!r}")
    if n_query < 1:
        raise HashbenchError(f"{dataset}: n_query must be >= 1, got {n_query}")
    # DSRH's training set is what is left: it needs at least one image.
    spare = 1 if n_train is None else 0
    if n_train is not None and n_train < 1:
        raise HashbenchError(f"{dataset}: n_train must be >= 1, got {n_train}")
    need = sum(sizes.values()) + spare
    if need > len(pool):
        asked = ", ".join(f"{v} {k}" for k, v in sizes.items() if v)
        if not scale_down:
            raise HashbenchError(
                f"{dataset}: protocol {protocol!r} asks for {asked} images"
                f"{' plus a non-empty training rest' if spare else ''} but only {len(pool)} usable "
                f"labelled images are available; lower n_query/n_train/n_val or pass scale_down=true")
        new = _scaled(sizes, len(pool))
        log.warning("%s: scale_down: protocol %r asked for %s images; the tree has %d usable, "
                    "using %s", dataset, protocol, asked, len(pool),
                    ", ".join(f"{v} {k}" for k, v in new.items() if v))
        sizes = new
    rng = np.random.default_rng(seed)
    order = rng.permutation(pool)
    query = order[:sizes["query"]]
    rest = order[sizes["query"]:]
    if n_train is None:
        val = rest[:sizes["val"]]
        train = rest[sizes["val"]:]
    else:
        train = rest[:sizes["train"]]
        val = rest[sizes["train"]:sizes["train"] + sizes["val"]]
    out = {"train": train, "query": query, "database": rest}
    if sizes["val"]:
        out["val"] = val
    return {k: np.sort(v) for k, v in out.items()}


def per_concept_protocol(pool: np.ndarray, labels: np.ndarray, class_names: Sequence[str], *,
                         per_query: int, per_train: int, n_val: int, seed: int, scale_down: bool,
                         dataset: str, protocol: str) -> dict[str, np.ndarray]:
    """Per-concept sampling (the common NUS-WIDE-21 protocol).

    For each concept in column order, ``per_query`` images having it and not yet chosen become
    queries; the database is the rest of the pool; from the database, ``per_train`` images per
    concept likewise become the training set, and ``n_val`` other database images the validation
    set. Order within a concept is a seeded permutation of the pool.
    """
    for k, v in (("per_concept_query", per_query), ("per_concept_train", per_train),
                 ("n_val", n_val)):
        if v < 0 or int(v) != v:
            raise HashbenchError(f"{dataset}: {k} must be a whole number >= 0, got {v!r}")
    if per_query < 1 or per_train < 1:
        raise HashbenchError(f"{dataset}: per_concept_query and per_concept_train must be >= 1")
    counts = labels[pool].sum(axis=0) if len(pool) else np.zeros(len(class_names))
    if scale_down and len(counts) and counts.min() < 2 * (per_query + per_train):
        # shrink both per-concept sizes by one factor so the rarest concept keeps half its images
        f = counts.min() / (2 * (per_query + per_train))
        new_q, new_t = max(1, int(per_query * f)), max(1, int(per_train * f))
        log.warning("%s: scale_down: protocol %r asked for %d query and %d training images per "
                    "concept; the rarest concept has %d usable images, using %d and %d", dataset,
                    protocol, per_query, per_train, int(counts.min()), new_q, new_t)
        per_query, per_train = new_q, new_t
    rng = np.random.default_rng(seed)
    short: list[str] = []

    def draw(candidates: np.ndarray, per: int, what: str, param: str) -> np.ndarray:
        taken = np.zeros(len(labels), bool)
        picked = []
        for c, name in enumerate(class_names):
            have = candidates[(labels[candidates, c] > 0) & ~taken[candidates]]
            if len(have) < per:
                if not scale_down:
                    raise HashbenchError(
                        f"{dataset}: protocol {protocol!r} asks for {per} {what} images with concept "
                        f"{name!r} but only {len(have)} unchosen images of the {len(candidates)} "
                        f"available have it; lower {param} or pass scale_down=true")
                short.append(f"{name} {len(have)}/{per} {what}")
            chosen = have[:per]
            taken[chosen] = True
            picked.append(chosen)
        return np.concatenate(picked) if picked else np.zeros(0, np.int64)

    query = draw(rng.permutation(pool), per_query, "query", "per_concept_query")
    database = np.setdiff1d(pool, query)
    if not len(database):
        raise HashbenchError(f"{dataset}: protocol {protocol!r} leaves no database image")
    train = draw(rng.permutation(database), per_train, "training", "per_concept_train")
    rest = rng.permutation(np.setdiff1d(database, train))
    if n_val > len(rest):
        if not scale_down:
            raise HashbenchError(
                f"{dataset}: protocol {protocol!r} asks for {n_val} validation images outside the "
                f"training set but only {len(rest)} database images remain; lower n_val or pass "
                "scale_down=true")
        short.append(f"val {len(rest)}/{n_val}")
    val = rest[:n_val]
    if short:
        log.warning("%s: scale_down: fewer images than asked for: %s", dataset, ", ".join(short))
    out = {"train": train, "query": query, "database": database}
    if len(val):
        out["val"] = val
    return {k: np.sort(v) for k, v in out.items()}


# --------------------------------------------------------------------------- split files
class SplitStore:
    """Split list files in ``<cache_dir>/splits/<protocol>-seed<seed>-<key>/``.

    Each split is a list file (``<rel path> <0|1> …``, paths relative to the image root) next to
    ``split.json``, which records the parameters that produced it (including a fingerprint of the
    pool) and each file's sha256. A stored split is reused only when the parameters match and every
    file still has its recorded sha256.
    """

    def __init__(self, cache_dir: Path):
        self.root = cache_dir / "splits"

    @staticmethod
    def folder_name(record: dict) -> str:
        key = hashlib.sha256(json.dumps(record, sort_keys=True).encode()).hexdigest()[:10]
        return f"{record.get('protocol', 'fixed')}-seed{record.get('seed', 0)}-{key}"

    def load(self, record: dict, rels: Sequence[str]) -> tuple[dict[str, np.ndarray], dict] | None:
        folder = self.root / self.folder_name(record)
        meta_file = folder / "split.json"
        if not meta_file.is_file():
            return None
        try:
            meta = json.loads(meta_file.read_text())
        except (OSError, ValueError):
            return None
        if meta.get("record") != json.loads(json.dumps(record)):
            return None
        index = {r: i for i, r in enumerate(rels)}
        out = {}
        for name, info in meta.get("files", {}).items():
            path = folder / info["file"]
            if not path.is_file() or sha256_file(path) != info["sha256"]:
                log.warning("%s: split file %s changed since it was written; forming the split again",
                            record.get("dataset"), path)
                return None
            paths, _ = parse_list_file(path, str(record.get("dataset")))
            try:
                out[name] = np.array([index[p] for p in paths], dtype=np.int64)
            except KeyError:
                return None
        return out, meta

    def save(self, record: dict, assign: dict[str, np.ndarray], rels: Sequence[str],
             labels: np.ndarray, image_root: Path) -> dict:
        folder = self.root / self.folder_name(record)
        files = {}
        for name, idx in assign.items():
            data = format_list_file([rels[i] for i in idx], labels[idx])
            write_atomic(folder / f"{name}.txt", data)
            files[name] = {"file": f"{name}.txt", "count": int(len(idx)),
                           "sha256": hashlib.sha256(data).hexdigest()}
        meta = {"record": record, "image_root": str(image_root), "files": files,
                "created": time.strftime("%Y-%m-%dT%H:%M:%S")}
        write_atomic(folder / "split.json", json.dumps(meta, indent=1).encode())
        return meta


def pool_fingerprint(rels: Sequence[str], pool: np.ndarray) -> str:
    return hashlib.sha256("\n".join(rels[i] for i in pool).encode()).hexdigest()


# --------------------------------------------------------------------------- the shared base class
@dataclass
class Catalogue:
    """What a layout parser returns.

    Attributes
    ----------
    image_root : Path
    rels : list of str, one per entry, relative to ``image_root``
    labels : ndarray of shape (n, C), uint8
    class_names : list of str, C names in column order
    listed : bool ndarray of shape (n,) or None
        Entries counted as "images" by ``data verify`` (default: all).
    present : bool ndarray of shape (n,) or None
        Presence, when the parser already listed the folder (default: checked here).
    fixed : dict of split name → catalogue indices, or None
        Splits given by the distribution itself (list files).
    notes : dict
        Extra facts for ``data verify``.
    """

    image_root: Path
    rels: list
    labels: np.ndarray
    class_names: list
    listed: np.ndarray | None = None
    present: np.ndarray | None = None
    fixed: dict | None = None
    notes: dict | None = None


class RawImageDataset(HashingDataset):
    """Base of image datasets read from disk; subclasses implement :meth:`_read_catalogue`.

    Subclasses set ``name`` (the registered name), ``protocols`` ({name: description}, empty when
    the splits come with the data), ``published`` (counts of the full distribution, for ``data
    verify``) and ``drop_unlabelled``; and implement ``_protocol_splits`` when they have protocols.
    """

    kind = "images"
    name = ""
    cache_family = ""  # datasets reading the same files share a cache folder (default: ``name``)
    protocols: dict[str, str] = {}
    published: dict[str, int] = {}
    drop_unlabelled = True

    # -- construction ---------------------------------------------------------------------------
    def _setup(self, data_root, *, protocol: str | None, seed: int, image_size: int, n_val: int,
               strict: bool, scale_down: bool, cache_dir, use_cache: bool,
               identity: Sequence[str] = ()) -> None:
        if data_root is None or str(data_root) == "":
            raise HashbenchError(f"{self.name}: data_root is required (the folder holding the data)")
        self.data_root = Path(data_root).expanduser()
        if not self.data_root.is_dir():
            raise HashbenchError(f"{self.name}: data_root {self.data_root} is not a folder")
        if self.protocols and protocol not in self.protocols:
            raise HashbenchError(f"{self.name} has no protocol {protocol!r}; valid: "
                                 f"{', '.join(self.protocols)}")
        if not isinstance(image_size, int) or image_size < 8:
            raise HashbenchError(f"{self.name}: image_size must be an integer >= 8, got {image_size!r}")
        if n_val < 0:
            raise HashbenchError(f"{self.name}: n_val must be >= 0, got {n_val}")
        self.protocol = protocol
        self.seed = int(seed)
        self.image_size = image_size
        self.n_val = int(n_val)
        self.strict = bool(strict)
        self.scale_down = bool(scale_down)
        self.use_cache = bool(use_cache)
        resolved = str(self.data_root.resolve())
        self.cache_dir = (Path(cache_dir).expanduser() if cache_dir
                          else default_cache_dir(self.cache_family or self.name, resolved, *identity))
        self.report_file = self.cache_dir / f"report-{self.name}.txt"
        self._scan_log = ScanLog(self.cache_dir / "scan.tsv")

        cat = self._read_catalogue()
        self.catalogue = cat
        self.class_names = list(cat.class_names)
        self.image_root = cat.image_root
        self._has_label = cat.labels.any(axis=1)
        self._present = cat.present if cat.present is not None else present_mask(cat.image_root, cat.rels)
        wanted = self._has_label if self.drop_unlabelled else np.ones(len(cat.rels), bool)
        self._candidates = np.flatnonzero(wanted & self._present)
        self.missing = np.flatnonzero(wanted & ~self._present)
        if len(cat.rels) and not len(self._candidates) and len(self.missing):
            first = cat.image_root / cat.rels[self.missing[0]]
            raise HashbenchError(
                f"{self.name}: none of the {len(self.missing)} images it needs exists under "
                f"{cat.image_root} (first expected: {first}); check data_root"
                + ("" if self.name != "listfile" else " or strip_prefix"))
        self._prepared = open_prepared(self.cache_dir, image_size) if self.use_cache else None
        self.corrupt = self._known_corrupt()
        if self.strict:
            if len(self.missing) or self.corrupt:
                self._refresh()  # raises: refuse before spending time on decoding
            self._check_unverified()
        self._refresh()

    def _read_catalogue(self) -> Catalogue:
        raise NotImplementedError

    def _known_corrupt(self) -> dict[int, str]:
        """Corrupt candidates known from earlier decode passes whose files are unchanged."""
        rels = self.catalogue.rels
        records = self._scan_log.load()
        prepared_bad = self._prepared[2] if self._prepared else {}
        corrupt = {}
        for i in self._candidates:
            rel = rels[i]
            rec = records.get(rel)
            if rec is not None and not rec[2] and _fresh(self.image_root / rel, rec[0], rec[1]):
                corrupt[int(i)] = rec[3]
            elif rel in prepared_bad and rec is None:
                corrupt[int(i)] = prepared_bad[rel]
        return corrupt

    def _check_unverified(self) -> None:
        """strict: fully decode every candidate not already known good (log or prepared cache)."""
        rels = self.catalogue.rels
        records = self._scan_log.load()
        cached = self._prepared[1] if self._prepared else {}
        todo = []
        for i in self._candidates:
            rel = rels[i]
            if int(i) in self.corrupt or rel in cached:
                continue
            rec = records.get(rel)
            if rec is not None and rec[2] and _fresh(self.image_root / rel, rec[0], rec[1]):
                continue
            todo.append(int(i))
        if todo:
            log.info("%s: strict: decoding %d images not yet verified", self.name, len(todo))
            self._decode_pass(todo)

    def _decode_pass(self, indices: Sequence[int], workers: int | None = None) -> None:
        rels = self.catalogue.rels
        sub = [rels[i] for i in indices]
        records = []

        def seen(j, _arr, error, fsize, mtime):
            if fsize < 0:
                return
            records.append((sub[j], fsize, mtime, not error, error))
            if error:
                self.corrupt[int(indices[j])] = error
            else:
                self.corrupt.pop(int(indices[j]), None)

        decode_all(self.image_root, sub, None,
                   default_workers(len(sub)) if workers is None else workers, seen)
        self._scan_log.append(records)

    def _refresh(self) -> None:
        """Recompute the pool from candidates and corrupt files; report; forget formed splits."""
        bad = np.fromiter(self.corrupt.keys(), dtype=np.int64, count=len(self.corrupt))
        self.pool = np.setdiff1d(self._candidates, bad)
        self._assign: dict[str, np.ndarray] | None = None
        self.split_info: dict = {}
        self._split_objects: dict[str, ImageSplit] = {}
        self._write_report()

    def _write_report(self) -> None:
        n_missing, n_corrupt = len(self.missing), len(self.corrupt)
        if not n_missing and not n_corrupt:
            if self.report_file.is_file():
                self.report_file.unlink()
            return
        rels = self.catalogue.rels
        lines = [f"# {self.name} under {self.image_root}: {n_missing} missing, {n_corrupt} corrupt; "
                 "policy: " + ("refuse (strict=true)" if self.strict else "skip (excluded from every split)")]
        lines += [f"missing\t{rels[i]}" for i in self.missing]
        lines += [f"corrupt\t{rels[i]}\t{why}" for i, why in sorted(self.corrupt.items())]
        write_atomic(self.report_file, ("\n".join(lines) + "\n").encode())
        first = self.image_root / rels[self.missing[0] if n_missing else min(self.corrupt)]
        counts = " and ".join(f"{n} {kind}" for n, kind in ((n_missing, "missing"),
                                                            (n_corrupt, "corrupt")) if n)
        what = f"{counts} image{'s' if n_missing + n_corrupt > 1 else ''} (first: {first})"
        if self.strict:
            raise HashbenchError(f"{self.name}: {what}; strict=true refuses; list in {self.report_file}")
        log.warning("%s: skipping %s; listed in %s (strict=true refuses instead)",
                    self.name, what, self.report_file)

    # -- splits ---------------------------------------------------------------------------------
    def splits(self) -> tuple[str, ...]:
        fixed = self.catalogue.fixed or {}
        has_val = self.n_val > 0 or "val" in fixed
        return SPLITS + (("val",) if has_val else ())

    def _protocol_splits(self, pool: np.ndarray) -> dict[str, np.ndarray]:
        raise NotImplementedError

    def _record(self) -> dict:
        """The parameters a stored split must match (subclasses add theirs)."""
        return {"dataset": self.name, "protocol": self.protocol, "seed": self.seed,
                "n_val": self.n_val, "scale_down": self.scale_down,
                "class_names": self.class_names,
                "pool": {"size": int(len(self.pool)),
                         "sha256": pool_fingerprint(self.catalogue.rels, self.pool)}}

    def _fixed_splits(self) -> dict[str, np.ndarray]:
        """Splits given by the data (list files), restricted to the pool; val carved if asked."""
        keep = np.zeros(len(self.catalogue.rels), bool)
        keep[self.pool] = True
        out = {}
        for name, idx in self.catalogue.fixed.items():
            idx = np.asarray(idx, dtype=np.int64)
            out[name] = idx[keep[idx]]
            if not len(out[name]):
                raise HashbenchError(f"{self.name}: split {name!r} has no usable image left "
                                     f"({len(idx)} listed); see {self.report_file}")
        if self.n_val and "val" not in out:
            train = out["train"]
            if self.n_val >= len(train):
                raise HashbenchError(f"{self.name}: n_val={self.n_val} would take the whole training "
                                     f"split ({len(train)} images); lower n_val")
            pick = np.random.default_rng(self.seed).permutation(len(train))[:self.n_val]
            mask = np.zeros(len(train), bool)
            mask[pick] = True
            out["val"], out["train"] = train[mask], train[~mask]
        return out

    def assignment(self) -> dict[str, np.ndarray]:
        """Catalogue indices of every split, formed (or read back from the split files) once."""
        if self._assign is not None:
            return self._assign
        record = self._record()
        store = SplitStore(self.cache_dir)
        loaded = store.load(record, self.catalogue.rels)
        if loaded is not None:
            assign, meta = loaded
        else:
            assign = (self._fixed_splits() if self.catalogue.fixed is not None
                      else self._protocol_splits(self.pool))
            meta = store.save(record, assign, self.catalogue.rels, self.catalogue.labels,
                              self.image_root)
        folder = store.root / store.folder_name(record)
        self.split_info = {"dir": str(folder),
                           "files": {k: dict(v, path=str(folder / v["file"]))
                                     for k, v in meta["files"].items()}}
        log.info("%s %s seed %d: %s (split files in %s)", self.name, self.protocol or "fixed",
                 self.seed, ", ".join(f"{k} {v['count']} sha256 {v['sha256'][:12]}"
                                      for k, v in meta["files"].items()), folder)
        self._assign = assign
        return assign

    def split_sizes(self) -> dict[str, int]:
        return {k: int(len(v)) for k, v in self.assignment().items()}

    def split(self, name: str) -> ImageSplit:
        if name not in self._split_objects:
            idx = self.assignment()[name]
            rels = self.catalogue.rels
            rows = None
            cache_file = None
            if self._prepared is not None:
                cache_file, row_of, _ = self._prepared
                rows = np.array([row_of.get(rels[i], -1) for i in idx], dtype=np.int64)
            self._split_objects[name] = ImageSplit(
                self.image_root, [rels[i] for i in idx], self.catalogue.labels[idx], self.image_size,
                cache_file=cache_file, rows=rows, report=self.report_file, strict=self.strict,
                dataset=self.name)
        return self._split_objects[name]

    # -- data verify / data prepare --------------------------------------------------------------
    def scan(self, workers: int | None = None) -> None:
        """Fully decode every candidate image now; corrupt ones leave the pool (and are reported)."""
        self.corrupt = {}
        self._decode_pass([int(i) for i in self._candidates], workers)
        self._refresh()

    def prepare(self, workers: int | None = None) -> dict:
        """Decode and warp every candidate image once into the prepared cache (see module doc)."""
        rels = [self.catalogue.rels[i] for i in self._candidates]
        summary = prepare_images(self.cache_dir, self.image_root, rels, self.image_size,
                                 default_workers(len(rels)) if workers is None else workers,
                                 self.name, self._scan_log)
        self._prepared = open_prepared(self.cache_dir, self.image_size)
        self.corrupt = self._known_corrupt()
        self._refresh()
        return summary

    def inventory(self) -> dict:
        """Counts for ``data verify``: images, labelled, classes, missing, corrupt and the files."""
        cat = self.catalogue
        listed = cat.listed if cat.listed is not None else np.ones(len(cat.rels), bool)
        rels = cat.rels
        return {
            "dataset": self.name,
            "data_root": str(self.data_root),
            "image_root": str(self.image_root),
            "images": int(listed.sum()),
            "labelled": int((listed & self._has_label).sum()),
            "classes": len(self.class_names),
            "class_names": list(self.class_names),
            "missing": int(len(self.missing)),
            "corrupt": int(len(self.corrupt)),
            "usable": int(len(self.pool)),
            "missing_files": [rels[i] for i in self.missing[:20]],
            "corrupt_files": {rels[i]: why for i, why in sorted(self.corrupt.items())[:20]},
            "report": str(self.report_file) if self.report_file.is_file() else None,
            "prepared_cache": str(self._prepared[0]) if self._prepared else None,
            "published": dict(self.published),
            **(cat.notes or {}),
        }
