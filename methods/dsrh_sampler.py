"""DSRH's released-code triplet sampler (dsrh.md, "Sampling", way 2): DSRH's own batch source.

For each anchor q (labelled training images, each repeated ``floor(balance_count / n_c) + 1``
times, n_c the training count of q's rarest label) it draws from the *whole* training set:

- one negative x- with r(q, x-) = 0;
- if q's largest available level r_max >= 2: x_a with r = r_max and x_b with 0 < r < r_max, giving
  the triplets (q, x_a, x_b), (q, x_a, x-), (q, x_b, x-) with w = (2^r_i - 2^r_j) / Z_q,
  Z_q = (2^r_a - 1)/ln 2 + (2^r_b - 1)/ln 3;
- if r_max = 1 (or no level lies strictly between 0 and r_max): one triplet (q, x+, x-) with
  x+ at r_max and w = (2^r_max - 1) / Z_q, Z_q = (2^r_max - 1)/ln 2, i.e. w = ln 2.

Unlabelled images are never anchors but may be negatives; an anchor without any r = 0 image in the
training set is dropped. Every item is four images ``(q, x_a, x_b, x-)``, their training-set rows
and the weights of the triplets ``TRIPLETS`` over those slots (0 where a triplet does not exist);
:meth:`ReleasedTriplets.unpack` turns a batch of items into its images and explicit weighted
:class:`~hashbench.sampling.Tuples`, which :class:`~hashbench.methods.dsrh.DSRHLoss` takes.
"""
from __future__ import annotations

import math

import numpy as np
import torch
from torch.utils.data import Dataset

from hashbench.errors import HashbenchError
from hashbench.sampling import BatchSource, EpochKeys, Tuples

# (anchor, more relevant, less relevant) slots of one item: (q, a, b), (q, a, -), (q, b, -)
TRIPLETS = ((0, 1, 2), (0, 1, 3), (0, 2, 3))


class ReleasedTriplets(BatchSource, Dataset):
    """DSRH's released-code batches: item k is anchor ``anchors[k]`` with three freshly drawn
    partners; the items are shuffled as ``(epoch, index)`` keys (:class:`EpochKeys`).

    Parameters
    ----------
    split : Dataset
        The training split (items ``(x, y)``; ``split.labels`` of shape (n, C)).
    seed : int
        Draws depend only on (seed, epoch, item), so a run is reproducible and workers agree.
    balance_count : int
        The constant 3000 of ``floor(3000 / n_c) + 1`` in the released code.
    """

    def __init__(self, split, *, seed: int = 0, balance_count: int = 3000):
        self.split, self.seed, self.epoch = split, seed, 0
        self.items = self
        labels = np.asarray(split.labels, dtype=np.int32)
        self.labels = labels
        counts = labels.sum(0)
        labelled = np.flatnonzero(labels.sum(1) > 0)
        if len(labelled) == 0:
            raise HashbenchError("the released-code sampler needs labelled training images; none have a label")
        rarest = np.array([counts[labels[i] > 0].min() for i in labelled])
        reps = balance_count // rarest + 1
        self.anchors = np.repeat(labelled, reps)
        self.dropped = 0
        has_negative = (labels @ labels[np.unique(self.anchors)].T == 0).any(0)
        if not has_negative.all():
            keep = np.isin(self.anchors, np.unique(self.anchors)[has_negative])
            self.dropped = int((~keep).sum())
            self.anchors = self.anchors[keep]
        if len(self.anchors) == 0:
            raise HashbenchError("the released-code sampler found no anchor with a negative (r = 0) image")

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.anchors)

    def draw(self, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Slots (q, a, b, neg) as training indices, and the weights of ``TRIPLETS``."""
        rng = np.random.default_rng((self.seed, self.epoch, k))
        q = int(self.anchors[k])
        r = self.labels @ self.labels[q]
        r[q] = -1  # never the anchor itself
        neg = rng.choice(np.flatnonzero(r == 0))
        r_max = int(r.max())
        a = rng.choice(np.flatnonzero(r == r_max))
        between = np.flatnonzero((r > 0) & (r < r_max))
        if r_max >= 2 and len(between):
            b = rng.choice(between)
            ra, rb = r_max, int(r[b])
            z = (2 ** ra - 1) / math.log(2) + (2 ** rb - 1) / math.log(3)
            w = np.array([2 ** ra - 2 ** rb, 2 ** ra - 1, 2 ** rb - 1]) / z
        else:
            b = a  # unused slot; its triplets get weight 0
            w = np.array([0.0, math.log(2), 0.0])
        return np.array([q, a, b, neg]), w.astype(np.float32)

    def __getitem__(self, key):
        """``key`` is an item index, or ``(epoch, index)`` from :class:`EpochKeys` (works in workers):
        the four images (4, ...), their labels (4, C), training rows (4,) and triplet weights (3,)."""
        if isinstance(key, tuple):
            self.epoch, key = key
        idx, w = self.draw(int(key))
        items = [self.split[int(i)] for i in idx]
        x = torch.stack([torch.as_tensor(it[0]) for it in items])
        y = torch.stack([torch.as_tensor(it[1]) for it in items])
        return x, y, torch.from_numpy(idx), torch.from_numpy(w)

    def order(self, generator, *, rank, replicas, batch):
        """Shuffled epoch keys; under DDP every process takes its share of each global batch."""
        return EpochKeys(len(self), generator, rank=rank, replicas=replicas, batch=batch)

    def unpack(self, batch):
        """(B, 4, ...) slots → one (4B, ...) batch of images and the 3B weighted triplets over it."""
        x, y, rows, w = batch
        n = len(x)
        slots = torch.tensor(TRIPLETS)
        index = (4 * torch.arange(n)[:, None, None] + slots[None]).reshape(-1, 3)
        return x.flatten(0, 1), y.flatten(0, 1), rows.flatten(), Tuples(index, w.reshape(-1))
