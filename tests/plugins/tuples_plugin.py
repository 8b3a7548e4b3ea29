"""Family 2 of the contract proof: an explicit weighted-triplet sampler the method owns.

Each training item is an anchor with a positive (shares a label) and a negative (shares none)
drawn from the whole training set, weighted by the positive's shared-label count. A quarter of the
anchors (drawn anew each epoch) and any anchor without a positive or a negative yield a
placeholder of weight 0 that ``unpack`` drops, so the number of tuples varies from batch to batch
(and from process to process under DDP). The loss is a weighted hinge on the
relaxed Hamming distance over the given tuples only.
"""
import numpy as np
import torch
from torch.utils.data import Dataset

from hashbench.losses import HashLoss
from hashbench.method import DeepMethod
from hashbench.registry import LOSSES, METHODS
from hashbench.sampling import BatchSource, EpochKeys, Tuples


class TripletItems(BatchSource, Dataset):
    """Items (anchor, positive, negative) drawn per (seed, epoch, anchor)."""

    def __init__(self, split, seed):
        self.split, self.seed, self.items = split, seed, self
        self.labels = np.asarray(split.labels, np.int64)

    def __len__(self):
        return len(self.labels)

    def draw(self, epoch, k):
        rng = np.random.default_rng((self.seed, epoch, k))
        r = self.labels @ self.labels[k]
        r[k] = -1
        pos, neg = np.flatnonzero(r > 0), np.flatnonzero(r == 0)
        if not len(pos) or not len(neg) or rng.random() < 0.25:
            return np.array([k, k, k]), 0.0
        p = rng.choice(pos)
        return np.array([k, p, rng.choice(neg)]), float(r[p])

    def __getitem__(self, key):
        epoch, k = key
        rows, w = self.draw(epoch, k)
        items = [self.split[int(i)] for i in rows]
        return (torch.stack([it[0] for it in items]), torch.stack([it[1] for it in items]), torch.from_numpy(rows),
                torch.tensor(w))

    def order(self, generator, *, rank, replicas, batch):
        return EpochKeys(len(self), generator, rank=rank, replicas=replicas, batch=batch)

    def unpack(self, batch):
        x, y, rows, w = batch
        n = len(x)
        index = 3 * torch.arange(n)[:, None] + torch.arange(3)[None, :]
        keep = w > 0
        return x.flatten(0, 1), y.flatten(0, 1), rows.flatten(), Tuples(index[keep], w[keep].float())


@LOSSES.register_module(name="plugin_tuple_loss")
class TupleHinge(HashLoss):
    """Weighted hinge max(0, margin + d(a, p) - d(a, n)) over explicit tuples."""

    takes = frozenset({"tuples"})

    def __init__(self, *, margin: float = 2.0):
        super().__init__()
        self.margin = margin

    def forward(self, codes, labels, indices=None, tuples=None, ref=None):
        a, p, n = tuples.index.unbind(1)
        k = codes.shape[1]
        d_ap = 0.5 * (k - (codes[a] * codes[p]).sum(1))
        d_an = 0.5 * (k - (codes[a] * codes[n]).sum(1))
        hinge = torch.relu(self.margin + d_ap - d_an)
        loss = (tuples.weight * hinge).sum() / max(len(tuples), 1) + 0.1 * codes.mean(0).pow(2).sum()
        return dict(loss=loss, tuples=torch.tensor(float(len(tuples)), device=codes.device))


@METHODS.register_module(name="plugin_tuples")
class PluginTuples(DeepMethod):
    """Test plugin: weighted triplets drawn by the method's own sampler."""

    def __init__(self, n_bits: int, *, margin: float = 2.0):
        super().__init__(n_bits, loss=dict(type="plugin_tuple_loss", margin=margin), relaxation="tanh", bypass=False)

    def batches(self, split, *, seed):
        return TripletItems(split, seed)
