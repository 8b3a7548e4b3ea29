"""Split protocols (seeded random, per concept, the validation carve) and the split store.

Every split is written as a list file under ``<cache dir>/splits/<protocol>-seed<seed>-<key>/`` next
to ``split.json`` (the parameters that produced it and each file's sha256), and read back while
the parameters and the files are unchanged.
"""
from __future__ import annotations

import hashlib
import json
import logging
import time
from pathlib import Path
from typing import Sequence

import numpy as np

from hashbench.errors import HashbenchError

from ._text import format_list_file, parse_list_file, sha256_file, write_atomic

log = logging.getLogger("hashbench.datasets")


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


def released_protocol(pool: np.ndarray, labelled: np.ndarray, *, n_database: int, n_query_candidates: int,
                      n_val: int, seed: int, scale_down: bool, dataset: str, protocol: str) -> dict[str, np.ndarray]:
    """DSRH's released NUS-WIDE evaluation, on a seeded permutation of ``pool`` (which keeps the
    unlabelled images): database = training set = the first ``n_database`` images, unlabelled
    ones included; queries = the *labelled* images among the next ``n_query_candidates`` (the
    release: 430 and 11 batches of 512, so 220,160 and 5,632); val = ``n_val`` labelled images
    among those left over. ``labelled`` is a mask over the catalogue."""
    sizes = {"database": n_database, "query candidates": n_query_candidates}
    for k, v in sizes.items():
        if int(v) != v or v < 1:
            raise HashbenchError(f"{dataset}: n_{k.replace(' ', '_')} must be a whole number >= 1, got {v!r}")
    if n_database + n_query_candidates > len(pool):
        asked = f"{n_database} database and {n_query_candidates} query-candidate images"
        if not scale_down:
            raise HashbenchError(f"{dataset}: protocol {protocol!r} asks for {asked} but only {len(pool)} usable "
                                 "images are available; lower n_database/n_query_candidates or pass scale_down=true")
        f = len(pool) / (n_database + n_query_candidates) * 0.9  # leaves a tenth for val
        n_database, n_query_candidates = max(1, int(n_database * f)), max(1, int(n_query_candidates * f))
        log.warning("%s: scale_down: protocol %r asked for %s; the tree has %d usable, using %d and %d",
                    dataset, protocol, asked, len(pool), n_database, n_query_candidates)
    order = np.random.default_rng(seed).permutation(pool)
    database = order[:n_database]
    candidates = order[n_database:n_database + n_query_candidates]
    query = candidates[labelled[candidates]]
    if not len(query):
        raise HashbenchError(f"{dataset}: protocol {protocol!r}: none of the {len(candidates)} query candidates "
                             "has a label")
    out = {"train": database, "query": query, "database": database}
    if n_val:
        left = order[n_database + n_query_candidates:]
        left = left[labelled[left]]
        if len(left) < n_val and not scale_down:
            raise HashbenchError(f"{dataset}: protocol {protocol!r} leaves {len(left)} labelled images for "
                                 f"n_val={n_val}; lower n_val or pass scale_down=true")
        out["val"] = left[:n_val]
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
        files = meta.get("files") if isinstance(meta, dict) else None
        if not isinstance(files, dict) or meta.get("record") != json.loads(json.dumps(record)):
            return None
        for info in files.values():  # names of files in this folder, nowhere else
            name = info.get("file") if isinstance(info, dict) else None
            if not (isinstance(name, str) and name and "/" not in name and "\\" not in name
                    and name not in (".", "..") and isinstance(info.get("sha256"), str)):
                log.warning("%s: %s is damaged; forming the split again", record.get("dataset"), meta_file)
                return None
        index = {r: i for i, r in enumerate(rels)}
        out = {}
        for name, info in files.items():
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


def carve_val(indices: np.ndarray, n_val: int, seed: int, dataset: str) -> tuple[np.ndarray, np.ndarray]:
    """(val, rest): ``n_val`` seeded random members of ``indices`` and the others, both in their
    original order; refused when that would leave nothing."""
    indices = np.asarray(indices)
    if n_val >= len(indices):
        raise HashbenchError(f"{dataset}: n_val={n_val} would take the whole training split ({len(indices)} "
                             "items); lower n_val")
    mask = np.zeros(len(indices), bool)
    mask[np.random.default_rng(seed).permutation(len(indices))[:n_val]] = True
    return indices[mask], indices[~mask]


def pool_fingerprint(rels: Sequence[str], pool: np.ndarray) -> str:
    return hashlib.sha256("\n".join(rels[i] for i in pool).encode()).hexdigest()
