"""MIRFLICKR-25K as distributed: 25,000 Flickr images, 24 "potential" labels.

Layout under ``data_root`` (the two archives unpacked side by side)::

    mirflickr/im1.jpg … mirflickr/im25000.jpg          (mirflickr25k.zip; meta/ is not used)
    mirflickr25k_annotations_v080/animals.txt …         (mirflickr25k_annotations_v080.zip)
        24 files <concept>.txt, 14 stricter <concept>_r1.txt, README.txt

(the annotation folder may also be ``annotations/``, ``mirflickr/annotations/`` or ``data_root``
itself; ``annotation_dir=`` names it explicitly). Each annotation file lists image numbers, one per
line, 1-based: ``1`` is ``im1.jpg``.

Labels: the 24 potential labels in the fixed alphabetical order of :data:`POTENTIAL` — never the
order of a directory listing. ``_r1`` files are ignored unless ``label_set="r1"`` (the 14 strict
labels, columns ``<concept>_r1``) or ``"both"`` (24 + 14 columns). Images with none of the chosen
labels are dropped; 24,581 images have at least one potential label.

Protocols (all seeded; sizes are parameters):

- ``dsrh``: ``n_query`` (2,000) random labelled images are queries; the rest is the database and
  the training set.
- ``standard``: ``n_query`` (2,000) queries; the database is the rest; ``n_train`` (5,000) training
  images drawn from the database.

In both, ``n_val`` validation images come from the non-query side and never overlap the training
set (DSRH: carved out of it); the query set is never used for model selection.
"""
from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np

from hashbench.errors import HashbenchError
from hashbench.registry import DATASETS

from hashbench.params import Interval, Options

from ._images import is_file_entry
from ._raw import Catalogue, RawImageDataset
from ._splits import random_protocol
from ._text import missing_file_error, read_text_lines

#: The 24 potential labels, alphabetical: the column order of the label matrix.
POTENTIAL = ("animals", "baby", "bird", "car", "clouds", "dog", "female", "flower", "food", "indoor",
             "lake", "male", "night", "people", "plant_life", "portrait", "river", "sea", "sky",
             "structures", "sunset", "transport", "tree", "water")
#: The 14 concepts that also have a stricter ``<concept>_r1.txt`` file, alphabetical.
RELEVANT = ("baby", "bird", "car", "clouds", "dog", "female", "flower", "male", "night", "people",
            "portrait", "river", "sea", "tree")
LABEL_SETS = ("potential", "r1", "both")

_IMAGE_NAME = re.compile(r"^im(\d+)\.jpg$", re.IGNORECASE)
_ANNOTATION_DIRS = ("mirflickr25k_annotations_v080", "annotations", "mirflickr/annotations", ".")


@DATASETS.register_module(name="mirflickr25k")
class MirFlickr25k(RawImageDataset):
    """MIRFLICKR-25K read from the raw distribution (24 labels; protocols ``dsrh``, ``standard``).

    Parameters
    ----------
    data_root : str or Path
        Folder holding ``mirflickr/`` (the images) and the annotation folder.
    protocol : {"dsrh", "standard"}
    seed : int
        Seed of the split.
    image_size : int
        Images are warped (no crop) to ``image_size`` × ``image_size``.
    n_query, n_train, n_val : int
        Split sizes (``n_train`` is used by ``standard`` only).
    label_set : {"potential", "r1", "both"}
    annotation_dir : str or Path, optional
        The folder with ``animals.txt`` …, when it is not one of the usual places.
    strict : bool
        Refuse missing or corrupt images instead of skipping them.
    scale_down : bool
        Shrink split sizes proportionally when the tree is too small for them.
    cache_dir : str or Path, optional
        Where split files, reports and prepared images go (default: see ``_raw``).
    use_cache : bool
        Read prepared images (``hashbench data prepare``) when they exist.
    """

    name = "mirflickr25k"
    protocols = {"dsrh": "n_query random labelled queries; database = training set = the rest",
                 "standard": "n_query queries; n_train training images from the database; "
                             "database = the rest"}
    published = {"images": 25000, "labelled": 24581, "classes": 24}
    _parameter_constraints = {"protocol": [Options(*protocols)], "n_query": [Interval(int, 1, None)],
                              "n_train": [Interval(int, 1, None)], "label_set": [Options(*LABEL_SETS)],
                              "annotation_dir": [Path, None]}

    def __init__(self, data_root, *, protocol: str = "dsrh", seed: int = 0, image_size: int = 224,
                 n_query: int = 2000, n_train: int = 5000, n_val: int = 1000,
                 label_set: str = "potential", annotation_dir=None, strict: bool = False,
                 scale_down: bool = False, cache_dir=None, use_cache: bool = True):
        if label_set not in LABEL_SETS:
            raise HashbenchError(f"mirflickr25k: label_set must be one of {', '.join(LABEL_SETS)}; "
                                 f"got {label_set!r}")
        self.n_query = n_query
        self.n_train = n_train
        self.label_set = label_set
        self.annotation_dir = annotation_dir
        self._setup(data_root, protocol=protocol, seed=seed, image_size=image_size, n_val=n_val,
                    strict=strict, scale_down=scale_down, cache_dir=cache_dir, use_cache=use_cache)

    # -- layout ---------------------------------------------------------------------------------
    def _image_dir(self) -> Path:
        folder = self.data_root / "mirflickr"
        if folder.is_dir():
            return folder
        if (self.data_root / "im1.jpg").is_file() or any(
                _IMAGE_NAME.match(n) for n in os.listdir(self.data_root)):
            return self.data_root  # data_root points inside mirflickr/
        raise missing_file_error(self.name, "the image folder mirflickr/ (im1.jpg … im25000.jpg)",
                                 folder, "unpack mirflickr25k.zip there or point data_root at it")

    def _annotation_dir(self) -> Path:
        if self.annotation_dir is not None:
            folder = Path(self.annotation_dir).expanduser()
            if not (folder / "animals.txt").is_file():
                raise missing_file_error(self.name, "the annotation file animals.txt",
                                         folder / "animals.txt", "check annotation_dir")
            return folder
        tried = []
        for sub in _ANNOTATION_DIRS:
            folder = (self.data_root / sub) if sub != "." else self.data_root
            if (folder / "animals.txt").is_file():
                return folder
            tried.append(str(folder))
        raise HashbenchError(
            f"{self.name}: expected the annotation file animals.txt (mirflickr25k_annotations_v080.zip) "
            f"in one of {', '.join(tried)}, not found; unpack it there or pass annotation_dir=")

    def _column_files(self) -> list[tuple[str, str]]:
        """(column name, file stem) in the fixed column order of the chosen label set."""
        cols = []
        if self.label_set in ("potential", "both"):
            cols += [(c, c) for c in POTENTIAL]
        if self.label_set in ("r1", "both"):
            cols += [(f"{c}_r1", f"{c}_r1") for c in RELEVANT]
        return cols

    def _read_catalogue(self) -> Catalogue:
        image_dir = self._image_dir()
        ann_dir = self._annotation_dir()
        found: dict[int, str] = {}
        with os.scandir(image_dir) as it:
            for entry in it:
                m = _IMAGE_NAME.match(entry.name)
                if m and is_file_entry(entry):
                    found[int(m.group(1))] = entry.name
        columns = self._column_files()
        annotated: list[np.ndarray] = []
        for _, stem in columns:
            path = ann_dir / f"{stem}.txt"
            if not path.is_file():
                raise missing_file_error(self.name, f"the annotation file {stem}.txt", path)
            numbers = []
            for line_no, line in enumerate(read_text_lines(path), 1):
                text = line.strip()
                if not text:
                    continue
                if not text.isdigit() or int(text) < 1:
                    raise HashbenchError(f"{self.name}: {path} line {line_no}: expected a 1-based "
                                         f"image number, got {text[:20]!r}")
                numbers.append(int(text))
            annotated.append(np.unique(np.array(numbers, dtype=np.int64)))
        numbers = np.union1d(np.fromiter(found.keys(), np.int64, len(found)),
                             np.concatenate(annotated) if annotated else np.zeros(0, np.int64))
        position = {int(n): i for i, n in enumerate(numbers)}
        labels = np.zeros((len(numbers), len(columns)), np.uint8)
        for c, nums in enumerate(annotated):
            labels[[position[int(n)] for n in nums], c] = 1
        present = np.array([int(n) in found for n in numbers], dtype=bool)
        prefix = "" if image_dir == self.data_root else "mirflickr/"
        rels = [f"{prefix}{found.get(int(n), f'im{int(n)}.jpg')}" for n in numbers]
        return Catalogue(image_root=self.data_root, rels=rels, labels=labels,
                         class_names=[name for name, _ in columns], listed=present.copy(),
                         present=present,
                         notes={"annotation_dir": str(ann_dir), "label_set": self.label_set,
                                "protocol": self.protocol})

    # -- protocols ------------------------------------------------------------------------------
    def _record(self) -> dict:
        rec = super()._record()
        rec.update(n_query=self.n_query, label_set=self.label_set,
                   n_train=self.n_train if self.protocol == "standard" else None)
        return rec

    def _protocol_splits(self, pool: np.ndarray) -> dict[str, np.ndarray]:
        return random_protocol(pool, n_query=self.n_query,
                               n_train=self.n_train if self.protocol == "standard" else None,
                               n_val=self.n_val, seed=self.seed, scale_down=self.scale_down,
                               dataset=self.name, protocol=self.protocol)
