"""``multidigits``: the embedded default dataset — multi-label canvases of real handwritten digits.

Built deterministically from scikit-learn's bundled digits (``load_digits``: 1,797 real 8×8
handwritten digits from UCI), so it needs no network. Each canvas is a 2×2 grid; one to four
*distinct* digits are drawn in random cells, upsampled, with a small random shift and contrast.
The label vector is the set of digits drawn (10 labels), so the graded relevance of two canvases,
the number of digits they share, runs from 0 to 4 — the multi-level similarity DSRH is about.

Digit instances are split once into a *seen* pool (train and database canvases) and an *unseen*
pool (query canvases): a query never contains a handwriting sample that training saw.

The canvases are generated on first use and cached as ``.npz`` in ``cache_dir`` (default
``$HASHBENCH_CACHE`` or ``~/.cache/hashbench``) under a name keyed by every parameter. A cache file
that cannot be read in full, or lacks an array of the expected shape, is generated again (with a
warning).
"""
from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path

import numpy as np

from hashbench.datasets.base import SPLITS, ArraySplit, HashingDataset, cache_root
from hashbench.errors import HashbenchError
from hashbench.params import Interval
from hashbench.registry import DATASETS
from hashbench.atomic import atomic_write

log = logging.getLogger("hashbench.datasets")

GENERATOR_VERSION = 1  # bump when the drawing code changes, so stale caches are not reused


def _upsample(digit: np.ndarray, size: int) -> np.ndarray:
    """Bilinear resize of one (8, 8) float image to (size, size)."""
    src = np.linspace(0, digit.shape[0] - 1, size)
    i0 = np.floor(src).astype(int)
    i1 = np.minimum(i0 + 1, digit.shape[0] - 1)
    f = src - i0
    rows = digit[i0] * (1 - f)[:, None] + digit[i1] * f[:, None]
    return rows[:, i0] * (1 - f)[None, :] + rows[:, i1] * f[None, :]


def draw_canvases(images, targets, pool, n, rng, *, canvas_size, max_digits):
    """Draw ``n`` canvases from digit instances ``pool``.

    Returns ``canvases`` (n, 3, S, S) uint8, ``labels`` (n, 10) uint8 and ``used`` (n, 4) int —
    the instance index drawn in each cell, -1 where the cell is empty.
    """
    cell = canvas_size // 2
    glyph = cell - cell // 4
    by_digit = [pool[targets[pool] == d] for d in range(10)]
    canvases = np.zeros((n, canvas_size, canvas_size), np.float64)
    labels = np.zeros((n, 10), np.uint8)
    used = np.full((n, 4), -1, np.int64)
    counts = rng.integers(1, max_digits + 1, size=n)
    for c in range(n):  # a few thousand canvases; each is a handful of array ops
        digits = rng.choice(10, size=counts[c], replace=False)
        cells = rng.choice(4, size=counts[c], replace=False)
        for d, k in zip(digits, cells):
            inst = rng.choice(by_digit[d])
            img = _upsample(images[inst], glyph) * rng.uniform(0.7, 1.0)
            dy, dx = rng.integers(0, cell - glyph + 1, size=2)
            y0, x0 = (k // 2) * cell + dy, (k % 2) * cell + dx
            region = canvases[c, y0:y0 + glyph, x0:x0 + glyph]
            np.maximum(region, img, out=region)
            labels[c, d] = 1
            used[c, k] = inst
    pixels = np.clip(canvases * (255.0 / 16.0), 0, 255).astype(np.uint8)
    return np.repeat(pixels[:, None], 3, axis=1), labels, used


def generate(*, n_train, n_query, n_database, canvas_size, max_digits, unseen_fraction, seed):
    """All three splits as a dict of arrays (see :func:`draw_canvases`)."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    images, targets = digits.images, digits.target
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(targets))
    n_unseen = int(round(unseen_fraction * len(order)))
    unseen, seen = np.sort(order[:n_unseen]), np.sort(order[n_unseen:])
    out = {}
    for split, pool, n in (("train", seen, n_train), ("query", unseen, n_query),
                           ("database", seen, n_database)):
        x, y, used = draw_canvases(images, targets, pool, n, rng,
                                   canvas_size=canvas_size, max_digits=max_digits)
        out[f"{split}_x"], out[f"{split}_y"], out[f"{split}_instances"] = x, y, used
    return out


@DATASETS.register_module(name="multidigits")
class MultiDigits(HashingDataset):
    """Embedded default: 2x2 canvases of 1-4 real handwritten digits (sklearn), 10 labels.

    Parameters
    ----------
    n_train, n_query, n_database : int
        Canvases per split. Train and database canvases use *seen* digit instances, queries only
        *unseen* ones.
    canvas_size : int
        Side of the square canvas in pixels (even).
    max_digits : int
        Each canvas holds 1..max_digits distinct digits (at most 4: one per grid cell).
    unseen_fraction : float
        Share of the 1,797 digit instances reserved for query canvases.
    seed : int
        Seed of the generator (independent of the training seed).
    cache_dir : str or None
        Where generated canvases are cached; default ``$HASHBENCH_CACHE`` or ``~/.cache/hashbench``.
    n_val : int
        Training canvases set aside, seeded by ``seed``, as the ``val`` split (model selection);
        the training split is the others. 0 (default): no ``val`` split.
    """

    name = "multidigits"
    class_names = [str(d) for d in range(10)]
    _parameter_constraints = {
        "n_train": [Interval(int, 1, None)], "n_query": [Interval(int, 1, None)], "n_database": [Interval(int, 1, None)],
        "canvas_size": [Interval(int, 8, None)], "max_digits": [Interval(int, 1, 4)],
        "unseen_fraction": [Interval(float, 0, 1, closed="neither")], "seed": [Interval(int, 0, None)],
        "cache_dir": [str, None], "n_val": [Interval(int, 0, None)],
    }

    def __init__(self, *, n_train=3000, n_query=500, n_database=3000, canvas_size=32, max_digits=4,
                 unseen_fraction=0.3, seed=0, cache_dir=None, n_val=0):
        if not 1 <= max_digits <= 4:
            raise HashbenchError(f"multidigits: max_digits must be 1..4 (one per cell); got {max_digits}")
        if canvas_size < 8 or canvas_size % 2:
            raise HashbenchError(f"multidigits: canvas_size must be an even number >= 8; got {canvas_size}")
        for name, n in (("n_train", n_train), ("n_query", n_query), ("n_database", n_database)):
            if int(n) < 1:
                raise HashbenchError(f"multidigits: {name} must be >= 1; got {n}")
        self.params = dict(n_train=int(n_train), n_query=int(n_query), n_database=int(n_database),
                           canvas_size=int(canvas_size), max_digits=int(max_digits),
                           unseen_fraction=float(unseen_fraction), seed=int(seed))
        key = hashlib.sha256(json.dumps({**self.params, "v": GENERATOR_VERSION},
                                        sort_keys=True).encode()).hexdigest()[:16]
        self.cache_path = Path(cache_dir or cache_root()) / f"multidigits-{key}.npz"
        self._arrays = self._load_or_generate()
        self.n_val = int(n_val)
        if self.n_val >= self.params["n_train"]:
            raise HashbenchError(f"multidigits: n_val={self.n_val} would take all {self.params['n_train']} training "
                                 "canvases; lower n_val")
        # rows of the generated training canvases: val ones and the rest, each in their order
        val = np.zeros(self.params["n_train"], bool)
        val[np.random.default_rng((self.params["seed"], 1)).permutation(len(val))[:self.n_val]] = True
        self._rows = {"train": np.flatnonzero(~val), "val": np.flatnonzero(val)}

    def _expected_shapes(self) -> dict[str, tuple]:
        side = self.params["canvas_size"]
        out = {}
        for split in ("train", "query", "database"):
            n = self.params[f"n_{split}"]
            out.update({f"{split}_x": (n, 3, side, side), f"{split}_y": (n, 10), f"{split}_instances": (n, 4)})
        return out

    def _read_cache(self) -> dict[str, np.ndarray] | None:
        """The cached arrays, or None (with a warning) when the file cannot be read in full or does
        not hold the arrays these parameters make (a copy cut short by a full disk or a kill)."""
        try:
            with np.load(self.cache_path) as f:
                arrays = {k: f[k] for k in f.files}
            expected = self._expected_shapes()
            wrong = next((k for k, shape in expected.items()
                          if k not in arrays or arrays[k].shape != shape), None)
            if wrong is not None:
                problem = (f"{wrong} missing" if wrong not in arrays else
                           f"{wrong} has shape {arrays[wrong].shape}, expected {expected[wrong]}")
            elif arrays["train_x"].dtype != np.uint8:
                problem = f"canvases of type {arrays['train_x'].dtype}, expected uint8"
            else:
                return arrays
        except Exception as exc:  # noqa: BLE001 - whatever a damaged file raises, it is regenerated
            problem = " ".join(f"{type(exc).__name__}: {exc}".split())[:160]
        log.warning("multidigits: the cache %s is damaged (%s); generating it again",
                    self.cache_path, problem)
        return None

    def _load_or_generate(self) -> dict[str, np.ndarray]:
        if self.cache_path.exists():
            arrays = self._read_cache()
            if arrays is not None:
                return arrays
        arrays = generate(**self.params)
        # atomic, under a unique temporary name: concurrent generators (DDP processes) do not collide
        atomic_write(self.cache_path, lambda tmp: np.savez_compressed(tmp, **arrays))
        return arrays

    def splits(self) -> tuple[str, ...]:
        return SPLITS + (("val",) if self.n_val else ())

    def split(self, name: str) -> ArraySplit:
        if name in ("train", "val") and self.n_val:
            rows = self._rows[name]
            x, y = self._arrays["train_x"][rows], self._arrays["train_y"][rows]
            return ArraySplit(x, y, ids=[f"train/{i}" for i in rows])
        y = self._arrays[f"{name}_y"]
        return ArraySplit(self._arrays[f"{name}_x"], y, ids=[f"{name}/{i}" for i in range(len(y))])

    def instances(self, name: str) -> np.ndarray:
        """(n, 4) indices into ``load_digits()`` of the digit drawn in each cell, -1 if empty."""
        if name in ("train", "val") and self.n_val:
            return self._arrays["train_instances"][self._rows[name]]
        return self._arrays[f"{name}_instances"]
