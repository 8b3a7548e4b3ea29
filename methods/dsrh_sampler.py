"""DSRH's released-code triplet sampler (dsrh.md, "Sampling", way 2): DSRH's own batch source.

For each anchor q (labelled training images, each repeated ``floor(balance_count / n_c) + 1``
times, n_c the training count of q's rarest label) it draws from the *whole* training set:

- one negative x- with r(q, x-) = 0;
- if q's largest available level r_max >= 2: x_a with r = r_max and x_b with 0 < r < r_max, giving
  the triplets (q, x_a, x_b), (q, x_a, x-), (q, x_b, x-) with w = (2^r_i - 2^r_j) / Z_q,
  Z_q = (2^r_a - 1)/ln 2 + (2^r_b - 1)/ln 3;
- if r_max = 1 (or no level lies strictly between 0 and r_max): one triplet (q, x+, x-) with
  x+ at r_max and w = (2^r_max - 1) / Z_q, Z_q = (2^r_max - 1)/ln 2, i.e. w = ln 2.

Unlabelled images are never anchors but may be negatives; an anchor without any r = 0 image, or
without any partner sharing a label, in the training set is dropped.

Two choices of the released code are options, off by default (hashbench's adaptation):

- ``self_pair``: the anchor's own image counts in its relevance row, so r_max = |y_q| and x_a (or
  x+) may be q itself — a pull towards the anchor's own code. Off: q is never its own partner.
- ``rows``: items are triplet *rows* — anchor image, more and less relevant image, weight — an
  anchor's repeats and its one or three rows contiguous, walked in order (the training split's),
  so that ``train.batch_size`` counts rows as cuda-convnet's minibatch does (128 there), and a
  row's anchor image is its own copy in the batch (its own dropout mask). Off: items are anchors,
  four images ``(q, x_a, x_b, x-)`` with the weights of ``TRIPLETS`` over those slots (0 where a
  triplet does not exist), shuffled each epoch; ``batch_size`` counts anchors.

:meth:`ReleasedTriplets.unpack` turns a batch of items into its images and explicit weighted
:class:`~hashbench.sampling.Tuples`, which :class:`~hashbench.methods.dsrh.DSRHLoss` takes.

Which images exist at which level is worked out on the distinct label sets of the training split
(a few thousand on NUS-WIDE, against hundreds of thousands of images), so setting up costs
(label sets)² · C, never images²; each draw is one pass over the images' labels.
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
    """DSRH's released-code batches: anchors (or, with ``rows``, triplet rows) with freshly drawn
    partners, ordered as ``(epoch, index)`` keys (:class:`EpochKeys`).

    Parameters
    ----------
    split : Dataset
        The training split (items ``(x, y)``; ``split.labels`` of shape (n, C)).
    seed : int
        Draws depend only on (seed, epoch, anchor repeat), so a run is reproducible and workers agree.
    balance_count : int
        The constant 3000 of ``floor(3000 / n_c) + 1`` in the released code.
    self_pair : bool
        The anchor counts in its own relevance row (the released code).
    rows : bool
        Items are triplet rows in order (the released code), not shuffled anchors.
    """

    def __init__(self, split, *, seed: int = 0, balance_count: int = 3000, self_pair: bool = False,
                 rows: bool = False):
        self.split, self.seed, self.epoch = split, seed, 0
        self.self_pair, self.rows = bool(self_pair), bool(rows)
        self.items = self
        labels = np.asarray(split.labels, dtype=np.int32)
        self.labels = labels
        counts = labels.sum(0)
        labelled = np.flatnonzero(labels.sum(1) > 0)
        if len(labelled) == 0:
            raise HashbenchError("the released-code sampler needs labelled training images; none have a label")
        rarest = np.array([counts[labels[i] > 0].min() for i in labelled])
        anchors = np.repeat(labelled, balance_count // rarest + 1)
        usable, n_rows = self._levels(labels, labelled)
        keep = np.isin(anchors, labelled[usable])
        self.dropped = int((~keep).sum())
        self.anchors = anchors[keep]
        if len(self.anchors) == 0:
            raise HashbenchError("the released-code sampler found no anchor with both a negative (r = 0) and a "
                                 "positive (r > 0) partner")
        per_repeat = n_rows[np.searchsorted(labelled, self.anchors)]
        # row -> (anchor repeat, triplet): three rows (q,a,b), (q,a,-), (q,b,-) or one (q,+,-)
        self.row_repeat = np.repeat(np.arange(len(self.anchors)), per_repeat)
        starts = np.cumsum(per_repeat) - per_repeat
        self.row_triplet = np.arange(len(self.row_repeat)) - np.repeat(starts, per_repeat)
        self.row_triplet[np.repeat(per_repeat == 1, per_repeat)] = 1  # the one triplet is slot (q, +, -)
        self._drawn: tuple | None = None

    def _levels(self, labels: np.ndarray, labelled: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """For each labelled image: whether it can be an anchor (an r = 0 image and an r > 0 partner
        exist) and its number of rows (3 when its top level is >= 2 with a level strictly between,
        else 1), from the distinct label sets."""
        sets, inverse, size = np.unique(labels, axis=0, return_inverse=True, return_counts=True)
        inverse = inverse.reshape(-1)
        f = sets.astype(np.float32)
        usable = np.zeros(len(sets), bool)
        n_rows = np.ones(len(sets), np.int64)
        for lo in range(0, len(sets), 512):
            u = np.arange(lo, min(lo + 512, len(sets)))
            rel = np.rint(f[u] @ f.T).astype(np.int64)  # (chunk, sets): shared labels
            avail = np.broadcast_to(size, rel.shape).copy()
            if not self.self_pair:
                avail[np.arange(len(u)), u] -= 1  # the anchor itself is not its own partner
            present = np.where(avail > 0, rel, -1)
            top = present.max(1)
            usable[u] = (present == 0).any(1) & (top > 0)
            between = ((present > 0) & (present < top[:, None])).any(1)
            n_rows[u] = np.where((top >= 2) & between, 3, 1)
        own = inverse[labelled]
        return usable[own], n_rows[own]

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.row_repeat) if self.rows else len(self.anchors)

    def draw(self, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Slots (q, a, b, neg) of anchor repeat ``k`` as training indices, and the weights of
        ``TRIPLETS``."""
        if self._drawn is not None and self._drawn[0] == (self.epoch, k):
            return self._drawn[1]
        rng = np.random.default_rng((self.seed, self.epoch, k))
        q = int(self.anchors[k])
        r = self.labels @ self.labels[q]
        if not self.self_pair:
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
        out = np.array([q, a, b, neg]), w.astype(np.float32)
        self._drawn = ((self.epoch, k), out)
        return out

    def __getitem__(self, key):
        """``key`` is an item index, or ``(epoch, index)`` from :class:`EpochKeys` (works in workers).
        An anchor item: its four images (4, ...), labels (4, C), training rows (4,) and triplet
        weights (3,); a row item (``rows``): its three images (3, ...), labels, rows and weight (1,)."""
        if isinstance(key, tuple):
            self.epoch, key = key
        key = int(key)
        if self.rows:
            idx, w = self.draw(int(self.row_repeat[key]))
            t = int(self.row_triplet[key])
            idx, w = idx[list(TRIPLETS[t])], w[t:t + 1]
        else:
            idx, w = self.draw(key)
        items = [self.split[int(i)] for i in idx]
        x = torch.stack([torch.as_tensor(it[0]) for it in items])
        y = torch.stack([torch.as_tensor(it[1]) for it in items])
        return x, y, torch.from_numpy(idx), torch.from_numpy(w)

    def order(self, generator, *, rank, replicas, batch):
        """Shuffled epoch keys (rows: in order); under DDP every process takes its share of each
        global batch."""
        return EpochKeys(len(self), generator, rank=rank, replicas=replicas, batch=batch, shuffle=not self.rows)

    def unpack(self, batch):
        """(B, S, ...) slots → one (S·B, ...) batch of images and the weighted triplets over it:
        three per anchor item (S = 4), one per row item (S = 3)."""
        x, y, rows, w = batch
        n, per = x.shape[0], x.shape[1]
        slots = torch.tensor([(0, 1, 2)] if per == 3 else TRIPLETS)
        index = (per * torch.arange(n)[:, None, None] + slots[None]).reshape(-1, 3)
        return x.flatten(0, 1), y.flatten(0, 1), rows.flatten(), Tuples(index, w.reshape(-1))
