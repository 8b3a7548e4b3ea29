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

Where the training crops and flips run is ``train.augment_on``: ``loader`` — torchvision's
operations (``transforms.v2``) on uint8 tensors, per image in the data loader (its workers when
``train.workers`` > 0) with torch's random state; ``device`` — :class:`BatchAugment` on the batch
once it is on the training device, each image its own crop and flip, drawn from a generator seeded
per (seed, epoch, process); ``auto`` (default) — ``device`` when training on CUDA, else ``loader``.
Either way a seeded run draws the same crops and flips again, resumed or not. Evaluation's centre
crop (no randomness) runs in the loader.
"""
from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import Dataset

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


def on_device(kind: str, where: str, device) -> bool:
    """Whether ``train.augment=kind`` runs on the batch on ``device`` (``train.augment_on=where``)."""
    return kind != "none" and (where == "device" or (where == "auto" and torch.device(device).type == "cuda"))


def crop_each(x: torch.Tensor, top: torch.Tensor, left: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Image ``b`` of ``x`` (B, C, H, W) cropped to ``size`` at (``top[b]``, ``left[b]``), on its device
    (``top`` and ``left`` on the CPU: views of ``x`` stacked in one copy, no host-device sync)."""
    h, w = size
    return torch.stack([x[b, :, t:t + h, l:l + w] for b, (t, l) in enumerate(zip(top.tolist(), left.tolist()))])


def flip_each(x: torch.Tensor, flip: torch.Tensor) -> torch.Tensor:
    """``x`` (B, C, H, W) with the images where ``flip`` (on the CPU) is true mirrored left to right."""
    return torch.stack([xi.flip(-1) if f else xi for xi, f in zip(x, flip.tolist())])


def resize_uint8(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """uint8 images (B, C, H, W) resized on their device (bilinear, antialiased) and rounded back to
    uint8: within one grey level of ``v2.Resize`` on each image."""
    y = torch.nn.functional.interpolate(x.float(), size=size, mode="bilinear", align_corners=False, antialias=True)
    return y.round_().clamp_(0, 255).to(torch.uint8)


class BatchAugment:
    """``train.augment`` on a whole batch on its device (``train.augment_on=device``): for
    ``standard`` the resize to 256/224 of the crop when the stored images are another size, then each
    image its own random crop; for both kinds each image its own random horizontal flip.

    The draws come from a CPU generator seeded by (``seed``, epoch, ``rank``) at
    :meth:`start_epoch`, so they do not depend on the device, and a run resumed at an epoch draws
    what the uninterrupted run drew; each process of a DDP run draws its own.
    """

    def __init__(self, kind: str, size: tuple[int, int] | None, *, seed: int, rank: int = 0):
        if kind not in ("flip", "standard"):
            raise ValueError(f"BatchAugment takes flip or standard, not {kind!r}")
        self.kind, self.seed, self.rank = kind, int(seed), int(rank)
        self.resize, self.crop = geometry(size) if kind == "standard" else (None, None)
        self.generator = torch.Generator()
        self.start_epoch(0)

    def start_epoch(self, epoch: int) -> None:
        state = np.random.SeedSequence([self.seed, int(epoch), self.rank]).generate_state(1, np.uint64)
        self.generator.manual_seed(int(state[0]))

    def params(self, n: int, height: int, width: int) -> tuple:
        """``(top, left, flip)`` of ``n`` images of ``height`` × ``width`` (top/left None for flip)."""
        top = left = None
        if self.kind == "standard":
            h, w = self.crop
            top = torch.randint(0, height - h + 1, (n,), generator=self.generator)
            left = torch.randint(0, width - w + 1, (n,), generator=self.generator)
        flip = torch.rand(n, generator=self.generator) < 0.5
        return top, left, flip

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if self.kind == "standard" and tuple(x.shape[-2:]) != self.resize:
            x = resize_uint8(x, self.resize)
        top, left, flip = self.params(len(x), *x.shape[-2:])
        if self.kind == "standard":
            x = crop_each(x, top, left, self.crop)
        return flip_each(x, flip)
