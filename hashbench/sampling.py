"""How training batches are drawn: the pieces a method's :class:`BatchSource` is made of.

A :class:`BatchSource` owns three things the trainer asks of it and nothing else:

- ``items`` — a ``Dataset``; by default every training image as ``(x, y, index)``;
- ``order(generator, rank, replicas, batch)`` — a ``Sampler`` over the items, or ``None`` for the
  trainer's own shuffle (seeded; sharded with ``DistributedSampler`` across processes);
- ``unpack(batch)`` — a collated batch of items → ``(images, labels, indices, tuples)``: the images
  that go through the network, their labels and training-set rows, and optionally explicit
  :class:`Tuples` over those images.

The default source (:class:`BatchSource` itself) shuffles the training images. A method that draws its batches otherwise (DSRH's
released-code sampler: an anchor and partners chosen from the whole training set) returns its own
source from :meth:`hashbench.method.DeepMethod.batches`.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.utils.data import DataLoader, Dataset, RandomSampler, Sampler

from hashbench.errors import HashbenchError


@dataclass
class Tuples:
    """Explicit (anchor, more relevant, less relevant) triples over the rows of a batch.

    Attributes
    ----------
    index : LongTensor of shape (T, 3)
        Rows of the batch: anchor, the item that should be closer, the item that should be farther.
    weight : Tensor of shape (T,)
        Weight of each triple (0 for a placeholder that does not count).
    """

    index: torch.Tensor
    weight: torch.Tensor

    def to(self, device, non_blocking: bool = False) -> "Tuples":
        return Tuples(self.index.to(device, non_blocking=non_blocking),
                      self.weight.to(device, non_blocking=non_blocking))

    def __len__(self) -> int:
        return len(self.index)


class Indexed(Dataset):
    """A split whose items carry their row: ``(x, y, index)``."""

    def __init__(self, split):
        self.split = split

    def __len__(self) -> int:
        return len(self.split)

    def __getitem__(self, i):
        return (*self.split[i], i)


class BatchSource:
    """The default way batches are drawn: shuffled training images, each with its row.

    Subclasses (a method's own sampler) override :attr:`items`, :meth:`order` and :meth:`unpack`.
    """

    def __init__(self, split):
        self.split = split
        self.items = Indexed(split)

    def __len__(self) -> int:
        return len(self.items)

    def order(self, generator: torch.Generator, *, rank: int, replicas: int, batch: int) -> Sampler | None:
        """The item order; ``None``: the trainer shuffles with ``generator`` (one process) or a
        seeded ``DistributedSampler`` (several)."""
        return None

    def unpack(self, batch) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, Tuples | None]:
        """``(images (B, ...), labels (B, C), indices (B,), tuples or None)`` of a collated batch."""
        x, y, index = batch
        return x, y, index, None



class EpochKeys(Sampler):
    """Shuffled ``(epoch, index)`` keys, so that items drawn at random can depend on the epoch even
    inside persistent DataLoader workers (which hold their own copy of the dataset and never see
    ``set_epoch``).

    Across ``replicas`` processes (DDP), every process draws the same permutation (same seed) and
    takes its slice of each global batch of ``batch`` keys, so the processes' batches, gathered in
    rank order, are the single-process batches; a ragged last global batch is dropped.
    ``shuffle=False`` walks the items in order (DSRH's released batches).
    """

    def __init__(self, n: int, generator: torch.Generator, *, rank: int = 0, replicas: int = 1,
                 batch: int | None = None, shuffle: bool = True):
        if replicas > 1 and (batch is None or batch % replicas or n < batch):
            raise HashbenchError(f"train.batch_size {batch} must be divisible by the {replicas} processes "
                                 f"and at most the {n} training items")
        self.n, self.generator, self.epoch = n, generator, 0
        self.rank, self.replicas, self.batch, self.shuffle = rank, replicas, batch, shuffle

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        if self.replicas == 1:
            return self.n
        return self.n // self.batch * (self.batch // self.replicas)

    def __iter__(self):
        epoch = self.epoch
        keys = torch.randperm(self.n, generator=self.generator) if self.shuffle else torch.arange(self.n)
        if self.replicas > 1:
            share = self.batch // self.replicas
            keys = keys[: self.n // self.batch * self.batch].view(-1, self.replicas, share)[:, self.rank].reshape(-1)
        return iter([(epoch, int(k)) for k in keys])


def data_loader(items, batch_size, *, shuffle, device, generator=None, workers=0, drop_last=False, sampler=None):
    """A DataLoader: pinned memory on CUDA, persistent workers when ``workers > 0``.

    With ``shuffle``, the order comes from ``generator`` alone. Without workers the loader also
    draws its (unused) worker base seed from it, as ``DataLoader(shuffle=True, generator=g)``
    does; with workers that seed comes from a generator of its own, so that the order does not
    depend on how often the (persistent) workers were started — a resumed run shuffles exactly
    like an uninterrupted one.
    """
    loader_generator = generator
    if shuffle and sampler is None:
        sampler = RandomSampler(items, generator=generator)
        if workers > 0:
            loader_generator = torch.Generator().manual_seed(int(generator.initial_seed()) + 1)
    return DataLoader(items, batch_size=batch_size, sampler=sampler, generator=loader_generator,
                      num_workers=workers, pin_memory=device.type == "cuda", drop_last=drop_last,
                      persistent_workers=workers > 0)
