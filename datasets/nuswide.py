"""NUS-WIDE as distributed: 269,648 Flickr images, 81 concepts; and its 21-concept subset.

Layout under ``data_root``::

    ImageList/Imagelist.txt                  one Windows path per line, e.g. actor\\0001_2124494179.jpg
                                             (or C:\\ImageData\\Flickr\\actor\\…); CRLF allowed
    Groundtruth/AllLabels/Labels_<c>.txt     one 0/1 per line, aligned with Imagelist.txt
    ConceptsList/Concepts81.txt              the 81 concept names (or Concepts81.txt at the top)
    Flickr/<folder>/<file>                   the images (``image_dir=`` when elsewhere)

A line ``a\\b\\folder\\file.jpg`` of the image list is read as ``Flickr/folder/file.jpg``: only the
last two components count (a ``..`` among them, climbing out of the image folder, is refused unless
``allow_outside_root=true``). Label columns follow the order of ``Concepts81.txt`` (alphabetical in
the distribution).

Registered datasets:

- ``nuswide81`` (DSRH's): all 81 concepts. Protocols ``dsrh`` (images with no label dropped;
  ``n_query`` = 2,100 random queries; database = training set = the rest; default), ``standard``
  (unlabelled dropped; ``n_query`` queries, ``n_train`` = 10,500 training images from the
  database) and ``released``, the evaluation of DSRH's released code: unlabelled images *kept*; on
  a seeded permutation of all usable images, database = training set = the first ``n_database`` =
  220,160 (the release's 430 batches of 512, unlabelled ones included as distractors and
  negatives), queries = the labelled ones among the next ``n_query_candidates`` = 5,632 (its 11
  query batches; the release's own image subset and order are not published, so a seeded
  permutation stands in for them), val = ``n_val`` labelled images of those left over.
- ``nuswide21``: the 21 most frequent concepts (counted over the whole image list, ties broken by
  concept order), images with none of them dropped (195,834 remain in the full set). Protocol
  ``standard`` (default): ``per_concept_query`` = 100 queries and ``per_concept_train`` = 500
  training images per concept, drawn without repeats, training images from the database;
  database = all but the queries. ``dsrh`` is also offered.

``n_val`` validation images always come from outside the training set and the queries (the
database side, or for ``released`` the images left over).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from hashbench.errors import HashbenchError
from hashbench.registry import DATASETS

from hashbench.params import Interval, Options

from ._raw import Catalogue, RawImageDataset, log
from ._splits import per_concept_protocol, random_protocol, released_protocol
from ._text import missing_file_error, read_binary_column, read_text_lines

#: The 21 most frequent concepts as reported by peers, most frequent first (for comparison only:
#: the loader counts them itself).
PUBLISHED_TOP21 = ("sky", "clouds", "person", "water", "animal", "grass", "buildings", "window",
                   "plants", "lake", "ocean", "road", "flowers", "sunset", "reflection", "rocks",
                   "vehicle", "snow", "tree", "beach", "mountain")


class _NusWide(RawImageDataset):
    """Shared reading of the NUS-WIDE layout; subclasses choose the concepts and protocols."""

    top_k: int | None = None  # None: all concepts; k: the k most frequent
    cache_family = "nuswide"  # nuswide81 and nuswide21 share scan log and prepared images

    def _init(self, data_root, *, image_dir, **common) -> None:
        self.image_dir = image_dir
        self._setup(data_root, identity=(str(image_dir or ""),), **common)

    def _concepts_file(self) -> Path:
        candidates = [self.data_root / "ConceptsList" / "Concepts81.txt",
                      self.data_root / "Concepts81.txt"]
        for path in candidates:
            if path.is_file():
                return path
        raise HashbenchError(f"{self.name}: expected the concept list Concepts81.txt at "
                             f"{candidates[0]} or {candidates[1]}, not found; check data_root")

    def _read_catalogue(self) -> Catalogue:
        list_file = self.data_root / "ImageList" / "Imagelist.txt"
        if not list_file.is_file():
            raise missing_file_error(self.name, "the image list ImageList/Imagelist.txt", list_file,
                                     "check data_root")
        concepts_file = self._concepts_file()
        image_dir = Path(self.image_dir).expanduser() if self.image_dir else self.data_root / "Flickr"
        if not image_dir.is_dir():
            raise missing_file_error(self.name, "the image folder Flickr/ (Flickr/<folder>/<file>)",
                                     image_dir, "unpack the images there or pass image_dir=")

        rels = []
        for number, line in enumerate(read_text_lines(list_file), 1):
            parts = [p for p in line.strip().replace("\\", "/").split("/") if p]
            if len(parts) < 2:
                raise HashbenchError(f"{self.name}: {list_file} line {number}: expected "
                                     f"'<folder>\\<file>', got {line.strip()[:60]!r}")
            rels.append(f"{parts[-2]}/{parts[-1]}")
        concepts = [c.strip() for c in read_text_lines(concepts_file) if c.strip()]
        if len(set(concepts)) != len(concepts):
            raise HashbenchError(f"{self.name}: {concepts_file} names a concept twice")
        if self.top_k is not None and len(concepts) < self.top_k:
            raise HashbenchError(f"{self.name}: needs at least {self.top_k} concepts but "
                                 f"{concepts_file} lists {len(concepts)}")

        label_dir = self.data_root / "Groundtruth" / "AllLabels"
        columns = []
        for concept in concepts:
            path = label_dir / f"Labels_{concept}.txt"
            if not path.is_file():
                raise missing_file_error(self.name, f"the label file of concept {concept!r}", path)
            col = read_binary_column(path, self.name)
            if len(col) != len(rels):
                raise HashbenchError(f"{self.name}: {path} has {len(col)} lines but {list_file} has "
                                     f"{len(rels)}; they must align line by line")
            columns.append(col)
        labels = np.stack(columns, axis=1) if columns else np.zeros((len(rels), 0), np.uint8)

        notes = {"protocol": self.protocol, "image_list": str(list_file)}
        if self.top_k is not None:
            counts = labels.sum(axis=0)
            ranked = sorted(range(len(concepts)), key=lambda c: (-int(counts[c]), c))
            keep = sorted(ranked[:self.top_k])  # columns stay in concept-list order
            frequency_order = [concepts[c] for c in ranked[:self.top_k]]
            notes["frequency_order"] = frequency_order
            if self.top_k == 21 and set(frequency_order) != set(PUBLISHED_TOP21):
                log.info("%s: the %d most frequent concepts of this copy differ from the published "
                         "ones: %s", self.name, self.top_k, ", ".join(frequency_order))
            labels = np.ascontiguousarray(labels[:, keep])
            concepts = [concepts[c] for c in keep]
        return Catalogue(image_root=image_dir, rels=rels, labels=labels, class_names=concepts,
                         notes=notes,
                         origin=([list_file], np.zeros(len(rels), np.int64),
                                 np.arange(1, len(rels) + 1)))

    def _record(self) -> dict:
        rec = super()._record()
        rec.update({k: getattr(self, k) for k in self._size_params()})
        return rec

    def _size_params(self) -> tuple[str, ...]:
        if self.protocol == "released":
            return ("n_database", "n_query_candidates")
        return ("n_query",) if self.protocol == "dsrh" else ("n_query", "n_train")

    def _protocol_splits(self, pool: np.ndarray) -> dict[str, np.ndarray]:
        if self.protocol == "released":
            return released_protocol(pool, self._has_label, n_database=self.n_database,
                                     n_query_candidates=self.n_query_candidates, n_val=self.n_val,
                                     seed=self.seed, scale_down=self.scale_down, dataset=self.name,
                                     protocol=self.protocol)
        return random_protocol(pool, n_query=self.n_query,
                               n_train=self.n_train if self.protocol == "standard" else None,
                               n_val=self.n_val, seed=self.seed, scale_down=self.scale_down,
                               dataset=self.name, protocol=self.protocol)


@DATASETS.register_module(name="nuswide81")
class NusWide81(_NusWide):
    """NUS-WIDE with all 81 concepts (DSRH; protocols dsrh, standard, released).

    Parameters
    ----------
    data_root : str or Path
        Folder holding ``ImageList/``, ``Groundtruth/``, ``ConceptsList/`` and ``Flickr/``.
    protocol : {"dsrh", "standard", "released"}
    seed, image_size, n_query, n_train, n_val, strict, scale_down, cache_dir, use_cache
        As for ``mirflickr25k``; ``n_train`` is used by ``standard`` only.
    n_database, n_query_candidates : int
        ``released``: the database (= training set) size and the number of query candidates
        (220,160 and 5,632; the unlabelled candidates are removed).
    image_dir : str or Path, optional
        The folder holding ``<folder>/<file>`` images when it is not ``data_root/Flickr``.
    allow_outside_root : bool
        Read image-list entries whose ``..`` climbs out of the image folder (default: refused).
    """

    name = "nuswide81"
    protocols = {"dsrh": "n_query random labelled queries; database = training set = the rest",
                 "standard": "n_query queries; n_train training images from the database; "
                             "database = the rest",
                 "released": "DSRH's released evaluation: unlabelled images kept; database = training set "
                             "= n_database images; queries = the labelled of n_query_candidates others"}
    published = {"images": 269648, "classes": 81}
    _parameter_constraints = {"protocol": [Options(*protocols)], "n_query": [Interval(int, 1, None)],
                              "n_train": [Interval(int, 1, None)], "image_dir": [Path, None],
                              "n_database": [Interval(int, 1, None)], "n_query_candidates": [Interval(int, 1, None)]}

    def __init__(self, data_root, *, protocol: str = "dsrh", seed: int = 0, image_size: int = 224,
                 n_query: int = 2100, n_train: int = 10500, n_val: int = 1000, image_dir=None,
                 strict: bool = False, scale_down: bool = False, cache_dir=None,
                 use_cache: bool = True, allow_outside_root: bool = False, n_database: int = 220160,
                 n_query_candidates: int = 5632):
        self.n_query = n_query
        self.n_train = n_train
        self.n_database, self.n_query_candidates = n_database, n_query_candidates
        self.drop_unlabelled = protocol != "released"  # the release keeps them in its database
        self._init(data_root, image_dir=image_dir, protocol=protocol, seed=seed,
                   image_size=image_size, n_val=n_val, strict=strict, scale_down=scale_down,
                   cache_dir=cache_dir, use_cache=use_cache, allow_outside_root=allow_outside_root)


@DATASETS.register_module(name="nuswide21")
class NusWide21(_NusWide):
    """NUS-WIDE on its 21 most frequent concepts (per-concept protocol ``standard``, or ``dsrh``).

    Parameters
    ----------
    data_root : str or Path
        Folder holding ``ImageList/``, ``Groundtruth/``, ``ConceptsList/`` and ``Flickr/``.
    protocol : {"standard", "dsrh"}
    per_concept_query, per_concept_train : int
        ``standard``: queries and training images drawn per concept (100 and 500).
    n_query : int
        ``dsrh``: number of random queries (2,100).
    seed, image_size, n_val, strict, scale_down, cache_dir, use_cache, image_dir, allow_outside_root
        As for ``nuswide81``.
    """

    name = "nuswide21"
    top_k = 21
    protocols = {"standard": "per_concept_query queries and per_concept_train training images per "
                             "concept; database = all but the queries",
                 "dsrh": "n_query random labelled queries; database = training set = the rest"}
    published = {"images": 269648, "labelled": 195834, "classes": 21}
    _parameter_constraints = {"protocol": [Options(*protocols)], "n_query": [Interval(int, 1, None)],
                              "per_concept_query": [Interval(int, 1, None)],
                              "per_concept_train": [Interval(int, 1, None)], "image_dir": [Path, None]}

    def __init__(self, data_root, *, protocol: str = "standard", seed: int = 0,
                 image_size: int = 224, per_concept_query: int = 100, per_concept_train: int = 500,
                 n_query: int = 2100, n_val: int = 1000, image_dir=None, strict: bool = False,
                 scale_down: bool = False, cache_dir=None, use_cache: bool = True,
                 allow_outside_root: bool = False):
        self.per_concept_query = per_concept_query
        self.per_concept_train = per_concept_train
        self.n_query = n_query
        self.n_train = None
        self._init(data_root, image_dir=image_dir, protocol=protocol, seed=seed,
                   image_size=image_size, n_val=n_val, strict=strict, scale_down=scale_down,
                   cache_dir=cache_dir, use_cache=use_cache, allow_outside_root=allow_outside_root)

    def _size_params(self) -> tuple[str, ...]:
        if self.protocol == "standard":
            return ("per_concept_query", "per_concept_train")
        return ("n_query",)

    def _protocol_splits(self, pool: np.ndarray) -> dict[str, np.ndarray]:
        if self.protocol == "dsrh":
            return super()._protocol_splits(pool)
        return per_concept_protocol(pool, self.catalogue.labels, self.class_names,
                                    per_query=self.per_concept_query,
                                    per_train=self.per_concept_train, n_val=self.n_val,
                                    seed=self.seed, scale_down=self.scale_down, dataset=self.name,
                                    protocol=self.protocol)
