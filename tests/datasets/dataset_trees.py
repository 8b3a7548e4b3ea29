"""Small trees in the exact on-disk layouts of the real distributions (see docs/datasets.md).

Every tree carries the traps the loaders must survive: CRLF line endings, Windows paths, ``_r1``
files, unlabelled images, a missing and a corrupt image. Builders return what a correct reader must
find, computed independently of the loaders.
"""
from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

# The 24 MIRFLICKR potential labels, written out here independently of the loader.
MIR_POTENTIAL = ["animals", "baby", "bird", "car", "clouds", "dog", "female", "flower", "food",
                 "indoor", "lake", "male", "night", "people", "plant_life", "portrait", "river",
                 "sea", "sky", "structures", "sunset", "transport", "tree", "water"]
MIR_R1 = ["baby", "bird", "car", "clouds", "dog", "female", "flower", "male", "night", "people",
          "portrait", "river", "sea", "tree"]


@pytest.fixture(autouse=True)
def _private_cache(tmp_path, monkeypatch):
    """Every test gets its own cache root: nothing is written under ~/.cache."""
    monkeypatch.setenv("HASHBENCH_CACHE", str(tmp_path / "hb-cache"))


def write_jpeg(path: Path, seed: int, size=(20, 14)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path, quality=90)


def write_corrupt(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\xff\xd8\xff\xe0 this is not really a jpeg " * 3)


def write_lines(path: Path, lines, crlf: bool = False) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    end = "\r\n" if crlf else "\n"
    path.write_bytes("".join(f"{line}{end}" for line in lines).encode())


# ------------------------------------------------------------------------------ MIRFLICKR-25K
def mirflickr_labels(i: int) -> set[int]:
    """Columns of image ``i`` in the potential set (before unlabelled ones are removed)."""
    return {i % 24, (i * 5) % 24}


def make_mirflickr(root: Path, n: int = 60, *, unlabelled=(3, 11), missing=(5,), corrupt=(7,),
                   r1_only=(11,)) -> dict:
    """``root/mirflickr/im1..n.jpg`` and ``root/mirflickr25k_annotations_v080/``.

    ``missing``: annotated, file absent. ``corrupt``: annotated, file undecodable.
    ``unlabelled``: in no potential file. ``r1_only``: unlabelled but listed in ``baby_r1.txt``.
    Returns {number: sorted column list} for every labelled image number.
    """
    images = root / "mirflickr"
    for i in range(1, n + 1):
        if i in missing:
            continue
        if i in corrupt:
            write_corrupt(images / f"im{i}.jpg")
        else:
            write_jpeg(images / f"im{i}.jpg", seed=i)
    (images / "meta" / "tags").mkdir(parents=True)
    (images / "meta" / "tags" / "tags1.txt").write_text("sky\nblue\n")
    labels = {i: sorted(mirflickr_labels(i)) for i in range(1, n + 1) if i not in unlabelled}
    ann = root / "mirflickr25k_annotations_v080"
    for c, name in enumerate(MIR_POTENTIAL):
        nums = [i for i, cols in labels.items() if c in cols]
        write_lines(ann / f"{name}.txt", nums, crlf=c % 2 == 0)
    for name in MIR_R1:
        nums = [1, 2] + (list(r1_only) if name == "baby" else [])
        write_lines(ann / f"{name}_r1.txt", nums, crlf=True)
    (ann / "README.txt").write_text("MIRFLICKR-25K potential and relevant labels\n")
    return labels


@pytest.fixture
def mirflickr_tree(tmp_path):
    root = tmp_path / "mirflickr-data"
    labels = make_mirflickr(root)
    return root, labels


# ------------------------------------------------------------------------------ NUS-WIDE
NUS_CONCEPTS = [f"concept{k:02d}" for k in range(81)]
NUS_FREQUENT = list(range(30, 51))  # by construction the 21 most frequent columns


def nus_row(i: int) -> set[int]:
    """Concept columns of list entry ``i`` (before the designated special cases)."""
    cols = {30 + i % 21, 30 + (i * 4) % 21}
    if i % 9 == 0:
        cols.add(i % 30)  # a rare concept (never among the frequent ones)
    return cols


def make_nuswide(root: Path, n: int = 150, *, unlabelled=(4, 40), rare_only=(13,), missing=(6,),
                 corrupt=(8,), concepts_at_top: bool = False) -> dict:
    """The NUS-WIDE layout: ImageList/Imagelist.txt (CRLF, backslashes), Groundtruth/AllLabels,
    ConceptsList/Concepts81.txt (or at the top), Flickr/<folder>/<file>.

    Returns {"rels": [...], "labels": (n, 81) array} in list order.
    """
    folders = ["actor", "beach", "zoo"]
    rels, lines = [], []
    for i in range(n):
        folder = folders[i % 3]
        name = f"{i:04d}_{1000 + 7 * i}.jpg"
        rels.append(f"{folder}/{name}")
        lines.append(f"C:\\ImageData\\Flickr\\{folder}\\{name}" if i % 2 else f"{folder}\\{name}")
        path = root / "Flickr" / folder / name
        if i in missing:
            continue
        if i in corrupt:
            write_corrupt(path)
        else:
            write_jpeg(path, seed=100 + i)
    write_lines(root / "ImageList" / "Imagelist.txt", lines, crlf=True)
    labels = np.zeros((n, 81), np.uint8)
    for i in range(n):
        if i in unlabelled:
            continue
        cols = {0} if i in rare_only else nus_row(i)
        labels[i, sorted(cols)] = 1
    for c, concept in enumerate(NUS_CONCEPTS):
        write_lines(root / "Groundtruth" / "AllLabels" / f"Labels_{concept}.txt",
                    labels[:, c].tolist(), crlf=c % 3 == 0)
    concepts_file = (root / "Concepts81.txt" if concepts_at_top
                     else root / "ConceptsList" / "Concepts81.txt")
    write_lines(concepts_file, NUS_CONCEPTS, crlf=True)
    return {"rels": rels, "labels": labels}


@pytest.fixture
def nuswide_tree(tmp_path):
    root = tmp_path / "nuswide-data"
    return root, make_nuswide(root)


def make_features_npz(path: Path, sizes: dict, dim: int, classes: int, p_label: float) -> None:
    """The ``features`` layout as one .npz: ``{split}_features`` (n, dim) and multi-hot ``{split}_labels``."""
    rng = np.random.default_rng(0)
    arrays = {}
    for split, n in sizes.items():
        arrays[f"{split}_features"] = rng.standard_normal((n, dim)).astype(np.float32)
        arrays[f"{split}_labels"] = (rng.random((n, classes)) < p_label).astype(np.uint8)
    np.savez(path, **arrays)


# --------------------------------------------------------------------------- CIFAR-10
CIFAR_BATCHES = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]


def cifar_batches(per_batch=60, seed=0):
    """Six batches of random pixels; every class present in each, labels cycling 0..9 shuffled."""
    rng = np.random.default_rng(seed)
    out = {}
    for name in CIFAR_BATCHES:
        labels = rng.permutation(np.arange(per_batch) % 10)
        out[name] = (rng.integers(0, 256, (per_batch, 3, 32, 32), dtype=np.uint8), labels)
    return out


def write_cifar_bin(root, data):
    folder = root / "cifar-10-batches-bin"
    folder.mkdir(parents=True)
    for name, (x, y) in data.items():
        records = np.concatenate([y.astype(np.uint8)[:, None], x.reshape(len(y), -1)], axis=1)
        records.tofile(folder / f"{name}.bin")
    (folder / "batches.meta.txt").write_text("\n".join(f"class{c}" for c in range(10)) + "\n\n")
    return folder


def write_cifar_py(root, data):
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    for name, (x, y) in data.items():  # as the distribution: bytes keys, a flat uint8 array, a list of ints
        with open(folder / name, "wb") as f:
            pickle.dump({b"batch_label": name.encode(), b"labels": [int(v) for v in y],
                         b"data": x.reshape(len(y), -1), b"filenames": [b"x.png"] * len(y)}, f, protocol=2)
    with open(folder / "batches.meta", "wb") as f:
        pickle.dump({b"label_names": [f"class{c}".encode() for c in range(10)], b"num_vis": 3072}, f, protocol=2)
    return folder


# --------------------------------------------------------------------------- published list files
def make_list_tree(root: Path, n_classes: int, *, single_label=False, n=(12, 4, 10), prefix="/data/someone/set/"):
    """``train.txt``, ``test.txt``, ``database.txt`` as peers publish them: every path under the
    author's absolute ``prefix``, ``n_classes`` label columns, each image with one label (or two);
    the database holds the training images and ``n[2]`` more. Returns ``{split: lines}``."""
    n_train, n_query, n_extra = n
    rows = []
    for i in range(n_train + n_query + n_extra):
        write_jpeg(root / "images" / f"{i:04d}.jpg", seed=i)
        cols = np.zeros(n_classes, int)
        cols[i % n_classes] = 1
        if not single_label:
            cols[(3 * i + 1) % n_classes] = 1
        rows.append(f"{prefix}images/{i:04d}.jpg " + " ".join(map(str, cols)))
    lists = {"train": rows[:n_train], "query": rows[n_train:n_train + n_query],
             "database": rows[:n_train] + rows[n_train + n_query:]}
    for split, file in (("train", "train.txt"), ("query", "test.txt"), ("database", "database.txt")):
        write_lines(root / file, lists[split])
    return lists
