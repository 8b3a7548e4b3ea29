"""Training-time augmentation (``train.augment``) and the matching evaluation geometry.

- ``none``: images as the dataset gives them.
- ``flip``: a random horizontal flip of each training image (DSRH's released code).
- ``standard``: the peers' recipe — resize to 256 × 256, a random 224 × 224 crop, a random
  horizontal flip; at evaluation resize to 256 and take the centre 224 crop. The crop is the
  network's input size (``backbone.input_size``; 224 when the network takes images as stored) and
  the resize keeps the recipe's ratio, 256/224 of the crop (a 384-pixel ViT: 439 → 384). Datasets
  store images warped to a square (``image_size``), so resizing to 256 is warping at 256; with
  ``dataset.image_size=256`` (and ``hashbench data prepare ... image_size=256``) the stored images
  are that size already and only the crop and flip are left, on the fly.

The operations are torchvision's (``transforms.v2``) on uint8 tensors, applied per image in the
data loader (its workers when ``train.workers`` > 0) with torch's random state, so a seeded run
draws the same crops and flips again.
"""
from __future__ import annotations

import torch
from torch.utils.data import Dataset

AUGMENTS = ("none", "flip", "standard")
RESIZE, CROP = 256, 224


def geometry(size: tuple[int, int] | None) -> tuple[tuple[int, int], tuple[int, int]]:
    """``standard``'s (resize, crop) for a network taking ``size`` (H, W), or None (224)."""
    crop = tuple(int(v) for v in size) if size else (CROP, CROP)
    return tuple(round(v * RESIZE / CROP) for v in crop), crop


def _steps(stored: int, resize: tuple[int, int]) -> list:
    from torchvision.transforms import v2

    return [] if (stored, stored) == resize else [v2.Resize(resize, antialias=True)]


def train_transform(kind: str, stored: int, size: tuple[int, int] | None = None):
    """The per-image transform of training images stored at ``stored`` × ``stored`` for a network
    taking ``size`` (None: as stored; see :func:`geometry`); None: no transform."""
    from torchvision.transforms import v2

    if kind == "none":
        return None
    if kind == "flip":
        return v2.RandomHorizontalFlip()
    resize, crop = geometry(size)
    return v2.Compose([*_steps(stored, resize), v2.RandomCrop(crop), v2.RandomHorizontalFlip()])


def eval_transform(kind: str, stored: int, size: tuple[int, int] | None = None):
    """The per-image transform of images encoded after training (None: none)."""
    from torchvision.transforms import v2

    if kind != "standard":
        return None
    resize, crop = geometry(size)
    return v2.Compose([*_steps(stored, resize), v2.CenterCrop(crop)])


class Transformed(Dataset):
    """A split whose images pass through ``transform``; everything else (``labels``, ``ids``, ...)
    is the split's own."""

    def __init__(self, split, transform):
        self.split, self.transform = split, transform

    def __len__(self) -> int:
        return len(self.split)

    def __getitem__(self, i):
        x, *rest = self.split[i]
        return (self.transform(torch.as_tensor(x)), *rest)

    def __getattr__(self, name):
        if name in ("split", "transform"):  # not set yet (unpickling in a worker)
            raise AttributeError(name)
        return getattr(self.split, name)


def stored_size(split) -> int:
    """The side of a split's stored images (they are square)."""
    return int(torch.as_tensor(split[0][0]).shape[-1])


def augmented(split, kind: str, *, train: bool, size: tuple[int, int] | None = None):
    """``split`` with the training (``train=True``) or evaluation transform of ``kind`` for a
    network taking ``size`` (a :class:`~hashbench.model.DeepHasher`'s ``input_hw``), or as it is."""
    if kind == "none" or len(split) == 0:
        return split
    make = train_transform if train else eval_transform
    transform = make(kind, stored_size(split), size)
    return split if transform is None else Transformed(split, transform)
