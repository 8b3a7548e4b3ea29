"""Images named by list files, the format most deep-hashing code and pre-made splits use.

One line per image, space separated: ``<path> <0|1> <0|1> … <0|1>``; the path is relative to
``data_root`` and must stay inside it (backslashes are read as ``/``; paths may not contain spaces).
Typically three files:
``train.txt``, ``test.txt`` (the queries) and ``database.txt``; an optional ``val`` file, or
``n_val`` images carved out of the training list with ``seed``. Published lists sometimes carry
the absolute paths of their authors' machines: ``strip_prefix`` removes such a prefix (one string,
or several separated by ``,`` / given as a list; the first that matches is removed), and
``strip_prefix="auto"`` finds it: the fewest leading components of the first listed path whose
removal leaves a file under ``data_root`` (none when the path is already there), then stripped from
every path of every list. ``n_classes`` and ``single_label`` check a list's label columns against
what its benchmark has (the ``configs/datasets`` presets for the published lists set them).

The splits are the files' own: nothing is drawn at random except the carved validation set. An
image listed in several files must carry the same labels in each. Unlabelled entries are kept (the
list decides). Missing and corrupt images are dropped from every split that lists them, reported,
and refused with ``strict=True``. Split files (with their sha256) are still written to the cache
dir, so a run records exactly which images it used.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from hashbench.errors import HashbenchError
from hashbench.registry import DATASETS

from hashbench.params import Flag, Interval

from ._raw import Catalogue, RawImageDataset
from ._text import normalise_path, parse_class_names, parse_list_lines, read_text_lines


def _as_list(value) -> list[str]:
    if value is None:
        return []
    if isinstance(value, (list, tuple)):
        return [str(v) for v in value]
    return [v.strip() for v in str(value).split(",") if v.strip()]


@DATASETS.register_module(name="listfile")
class ListFile(RawImageDataset):
    """Images and multi-hot labels from list files (``path 0 1 0 …``): train / query / database.

    Parameters
    ----------
    data_root : str or Path
        The folder list paths are relative to.
    train, query, database : str or Path
        List files; a relative name is looked up under ``data_root`` first, then the working
        directory. Defaults: ``train.txt``, ``test.txt``, ``database.txt``.
    val : str or Path, optional
        A validation list file. Without it, ``n_val`` training images are carved out (default 0:
        the published training list stays whole).
    strip_prefix : str or list of str, optional
        Prefix(es) removed from listed paths (e.g. ``/home/author/data/``), or ``"auto"``.
    n_classes : int or None
        The number of label columns the lists must have (refused otherwise).
    single_label : bool
        Every listed image must carry exactly one label (single-label benchmarks).
    class_names : list of str, str or None
        Column names: a list, comma-separated names, or a file with one name per line. Default
        ``"0"``, ``"1"``, ….
    allow_outside_root : bool
        Read list paths that lead outside ``data_root`` (absolute paths elsewhere, ``..`` climbing
        out of it). Default false: such a list is refused, naming its first such line, so a list
        cannot make hashbench read arbitrary files. Symlinks inside ``data_root`` are followed
        either way.
    seed, image_size, strict, cache_dir, use_cache
        As for ``mirflickr25k``.
    """

    name = "listfile"
    drop_unlabelled = False
    _parameter_constraints = {"train": [Path], "query": [Path], "database": [Path], "val": [Path, None],
                              "strip_prefix": [str, list, None], "class_names": [str, list, None],
                              "n_classes": [Interval(int, 1, None), None], "single_label": [Flag()]}

    def __init__(self, data_root, *, train="train.txt", query="test.txt", database="database.txt",
                 val=None, strip_prefix=None, class_names=None, n_val: int = 0, seed: int = 0,
                 image_size: int = 224, strict: bool = False, cache_dir=None,
                 use_cache: bool = True, allow_outside_root: bool = False, n_classes: int | None = None,
                 single_label: bool = False):
        self.files = {"train": train, "query": query, "database": database}
        if val is not None:
            self.files["val"] = val
        self.n_classes, self.single_label = n_classes, bool(single_label)
        self.strip_prefix = _as_list(strip_prefix)
        if self.strip_prefix == ["auto"]:
            root = Path(str(data_root or "")).expanduser()
            self.strip_prefix = self._auto_prefix(root, train) if root.is_dir() else []  # else _setup refuses
        self._class_names_arg = class_names
        identity = [f"{k}={v}" for k, v in self.files.items()] + self.strip_prefix
        self._setup(data_root, protocol=None, seed=seed, image_size=image_size, n_val=n_val,
                    strict=strict, scale_down=False, cache_dir=cache_dir, use_cache=use_cache,
                    identity=identity, allow_outside_root=allow_outside_root)

    def _resolve(self, spec, split: str) -> Path:
        path = Path(spec).expanduser()
        if path.is_absolute():
            if path.is_file():
                return path
            raise HashbenchError(f"{self.name}: expected the {split} list file at {path}, not found")
        for candidate in (self.data_root / path, Path.cwd() / path):
            if candidate.is_file():
                return candidate
        raise HashbenchError(f"{self.name}: expected the {split} list file {spec} at "
                             f"{self.data_root / path} (or {Path.cwd() / path}), not found")

    def _auto_prefix(self, data_root: Path, train) -> list[str]:
        """``strip_prefix="auto"``: the leading components of the training list's first path that
        stand between it and a file under ``data_root`` (``[]`` when it is there already)."""
        self.data_root = data_root
        path = self._resolve(train, "train")
        first = next((ln.split()[0] for ln in read_text_lines(path) if ln.split()), None)
        if first is None:
            return []
        parts = normalise_path(first).split("/")
        for cut in range(len(parts)):
            if (data_root / "/".join(parts[cut:])).is_file():
                return ["/".join(parts[:cut]) + "/"] if cut else []
        raise HashbenchError(f"{self.name}: strip_prefix=auto: no tail of {first!r} (the first line of {path}) is "
                             f"a file under {data_root}; check data_root or give strip_prefix=PREFIX")

    def _read_catalogue(self) -> Catalogue:
        order = [s for s in ("database", "train", "query", "val") if s in self.files]
        parsed = {}
        width = None
        for split in order:
            path = self._resolve(self.files[split], split)
            paths, labels, lines = parse_list_lines(path, self.name, self.strip_prefix)
            if not paths:
                raise HashbenchError(f"{self.name}: the {split} list file {path} lists no image")
            if self.n_classes is not None and labels.shape[1] != self.n_classes:
                raise HashbenchError(f"{self.name}: {path} has {labels.shape[1]} label columns; this benchmark has "
                                     f"{self.n_classes} (n_classes={self.n_classes})")
            if self.single_label and (labels.sum(1) != 1).any():
                j = int(np.flatnonzero(labels.sum(1) != 1)[0])
                raise HashbenchError(f"{self.name}: {path} line {lines[j]} carries {int(labels[j].sum())} labels; this "
                                     "benchmark is single-label (single_label=true)")
            if width is None:
                width = labels.shape[1]
            elif labels.shape[1] != width:
                raise HashbenchError(f"{self.name}: {path} has {labels.shape[1]} label columns, "
                                     f"the {order[0]} list has {width}")
            parsed[split] = (path, paths, labels, lines)

        index: dict[str, int] = {}
        rels: list[str] = []
        owner: list[str] = []
        first_line: list[int] = []
        for split in order:
            for p, line in zip(parsed[split][1], parsed[split][3]):
                if p not in index:
                    index[p] = len(rels)
                    rels.append(p)
                    owner.append(split)
                    first_line.append(line)
        all_labels = np.zeros((len(rels), width), np.uint8)
        filled = np.zeros(len(rels), bool)
        fixed = {}
        for split in order:
            path, paths, labels, _ = parsed[split]
            idx = np.array([index[p] for p in paths], dtype=np.int64)
            new = ~filled[idx]
            all_labels[idx[new]] = labels[new]
            filled[idx] = True
            clash = np.flatnonzero((all_labels[idx] != labels).any(axis=1))
            if len(clash):
                j = clash[0]
                raise HashbenchError(
                    f"{self.name}: {paths[j]} has different labels in {path} and in the "
                    f"{owner[idx[j]]} list file")
            fixed[split] = idx
        if "val" in fixed:
            both = np.intersect1d(fixed["val"], fixed["query"])
            if len(both):
                raise HashbenchError(
                    f"{self.name}: {len(both)} images of the val list are also queries (e.g. "
                    f"{rels[both[0]]}); the query set must never be used for model selection")
        return Catalogue(image_root=self.data_root, rels=rels, labels=all_labels,
                         class_names=parse_class_names(self._class_names_arg, width, self.name, self.data_root),
                         fixed=fixed,
                         notes={"list_files": {s: str(parsed[s][0]) for s in order}},
                         origin=([parsed[s][0] for s in order],
                                 np.array([order.index(s) for s in owner], dtype=np.int64),
                                 np.array(first_line, dtype=np.int64)))
