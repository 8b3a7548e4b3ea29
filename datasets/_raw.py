"""The base of image datasets read from disk: a layout parser's :class:`Catalogue` becomes a pool
of usable images, split by a protocol and read by :class:`~._images.ImageSplit`.

The dataset files (``mirflickr25k``, ``nuswide``, ``listfile``) only parse their own layout into a
:class:`Catalogue`; everything else lives here and in ``_text``, ``_images`` and ``_splits``.

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

Paths outside the image root
----------------------------
Every catalogue path must lead to a file inside the image root: an absolute path must lie under
it, and ``..`` may not climb out of it (a path with ``..`` is judged on the real folders, so ``..``
after a symlink counts from where the symlink leads). Otherwise the dataset refuses, naming the
first such entry (and its list file and line) and how many there are, before anything is read;
``allow_outside_root=true`` (``listfile``, ``nuswide81``, ``nuswide21``) reads them anyway.
Symlinks inside the root are followed wherever they point: placing them there is the user's
choice, not the list's.

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
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from hashbench.errors import HashbenchError
from hashbench.params import Flag, Interval

from ._images import (ImageSplit, ScanLog, decode_all, default_workers, fresh, open_prepared, prepare_images,
                      present_mask)
from ._splits import SplitStore, carve_val, pool_fingerprint
from ._text import write_atomic
from .base import SPLITS, HashingDataset, cache_root

log = logging.getLogger("hashbench.datasets")


def default_cache_dir(dataset: str, *identity: str) -> Path:
    """``<cache_root>/<dataset>/<key>``, ``key`` a short hash of the strings naming the data."""
    key = hashlib.sha256("\0".join(identity).encode()).hexdigest()[:12]
    return cache_root() / dataset / key


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
    origin : (files, file_of, line_of) or None
        Where each entry was read, for error messages: entry ``i`` is line ``line_of[i]`` of
        ``files[file_of[i]]`` (plain arrays, not a function: datasets stay picklable).
    """

    image_root: Path
    rels: list
    labels: np.ndarray
    class_names: list
    listed: np.ndarray | None = None
    present: np.ndarray | None = None
    fixed: dict | None = None
    notes: dict | None = None
    origin: tuple[list, np.ndarray, np.ndarray] | None = None

    def where(self, i: int) -> str:
        """``" at <file> line <n>"`` for entry ``i``, or ``""`` when the parser did not say."""
        if self.origin is None:
            return ""
        files, file_of, line_of = self.origin
        return f" at {files[int(file_of[i])]} line {int(line_of[i])}"


def outside_root(root: Path, rels: Sequence[str]) -> list[int]:
    """Indices of the ``rels`` that do not lead inside ``root`` (see the module doc)."""
    top = os.path.abspath(root)
    real = os.path.realpath(root)

    def under(p: str, folder: str) -> bool:
        return p == folder or p.startswith(folder.rstrip(os.sep) + os.sep)

    out = []
    for i, rel in enumerate(rels):
        climbs = ".." in rel and ".." in rel.split("/")
        if not climbs and not rel.startswith("/"):
            continue  # the usual case, decided without touching the file system
        joined = os.path.join(top, rel)
        lexical = os.path.normpath(joined)
        inside = under(lexical, top) or under(lexical, real)
        if inside and climbs:
            inside = under(os.path.realpath(joined), real)
        if not inside:
            out.append(i)
    return out


class RawImageDataset(HashingDataset):
    """Base of image datasets read from disk; subclasses implement :meth:`_read_catalogue`.

    Subclasses set ``name`` (the registered name), ``protocols`` ({name: description}, empty when
    the splits come with the data), ``published`` (counts of the full distribution, for ``data
    verify``) and ``drop_unlabelled``; and implement ``_protocol_splits`` when they have protocols.
    """

    kind = "images"
    preparable = True
    name = ""
    cache_family = ""  # datasets reading the same files share a cache folder (default: ``name``)
    protocols: dict[str, str] = {}
    published: dict[str, int] = {}
    drop_unlabelled = True
    _parameter_constraints = {
        "data_root": [Path], "seed": [Interval(int, 0, None)], "image_size": [Interval(int, 8, None)],
        "n_val": [Interval(int, 0, None)], "strict": [Flag()], "scale_down": [Flag()], "cache_dir": [Path, None],
        "use_cache": [Flag()], "allow_outside_root": [Flag()],
    }

    # -- construction ---------------------------------------------------------------------------
    def _setup(self, data_root, *, protocol: str | None, seed: int, image_size: int, n_val: int,
               strict: bool, scale_down: bool, cache_dir, use_cache: bool,
               identity: Sequence[str] = (), allow_outside_root: bool = False) -> None:
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
        self.allow_outside_root = bool(allow_outside_root)
        if not self.allow_outside_root:
            self._refuse_outside(cat)
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

    def _refuse_outside(self, cat: Catalogue) -> None:
        bad = outside_root(cat.image_root, cat.rels)
        if not bad:
            return
        first = bad[0]
        hint = (" (strip_prefix= removes an absolute prefix written on another machine)"
                if self.name == "listfile" else "")
        raise HashbenchError(
            f"{self.name}: {len(bad)} image path{'s' if len(bad) > 1 else ''} lead{'' if len(bad) > 1 else 's'} "
            f"outside the image root {cat.image_root} (first: {cat.rels[first]!r}{cat.where(first)}); "
            f"list paths must lead inside it{hint}; allow_outside_root=true reads them anyway")

    def _known_corrupt(self) -> dict[int, str]:
        """Corrupt candidates known from earlier decode passes whose files are unchanged."""
        rels = self.catalogue.rels
        records = self._scan_log.load()
        prepared_bad = self._prepared[2] if self._prepared else {}
        corrupt = {}
        for i in self._candidates:
            rel = rels[i]
            rec = records.get(rel)
            if rec is not None and not rec[2] and fresh(self.image_root / rel, rec[0], rec[1]):
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
            if rec is not None and rec[2] and fresh(self.image_root / rel, rec[0], rec[1]):
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
                         "sha256": pool_fingerprint(self.catalogue.rels, self.pool),
                         # edited labels re-form the split and rewrite its files (which carry them)
                         "labels_sha256": hashlib.sha256(
                             np.ascontiguousarray(self.catalogue.labels[self.pool]).tobytes()).hexdigest()}}

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
            out["val"], out["train"] = carve_val(out["train"], self.n_val, self.seed, self.name)
        return out

    def assignment(self) -> dict[str, np.ndarray]:
        """Catalogue indices of every split, formed (or read back from the split files) once."""
        if self._assign is not None:
            return self._assign
        record = self._record()
        store = SplitStore(self.cache_dir)
        loaded = store.load(record, self.catalogue.rels)  # None for a damaged or stale one: formed again
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
        assign = self.assignment()
        return {k: int(len(assign[k])) for k in self.splits()}

    def split_files(self) -> dict:
        self.assignment()
        return self.split_info

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
        return dict(summary, dataset=self.name, image_size=self.image_size, usable=int(len(self.pool)),
                    report=str(self.report_file) if self.report_file.is_file() else None)

    def inventory(self) -> dict:
        """Counts for ``data verify``: images, labelled, classes, missing, corrupt and the files."""
        cat = self.catalogue
        listed = cat.listed if cat.listed is not None else np.ones(len(cat.rels), bool)
        rels = cat.rels
        return {
            "dataset": self.name,
            "kind": self.kind,
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
