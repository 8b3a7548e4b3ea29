"""Training input pipeline: the peers' JPEG pipeline against hashbench's prepared cache, same augmentation.

Issue 13's target: (b) at least 5x (a) in images per second per core. In one run, on a generated
tree of JPEGs in the MIRFLICKR-25K layout at MIRFLICKR-like sizes (500 x 375 and 375 x 500,
quality 90; random smooth colour fields, so they compress like photos rather than noise):

(a) the peers' pipeline: a Dataset that opens each JPEG with PIL, converts it to RGB, resizes it
    to 256, takes a random 224 crop, flips it at random, turns it into a float tensor and
    normalises it (torchvision's classic transforms), in a DataLoader with ``--workers`` workers;
(b) hashbench's: ``mirflickr25k`` with ``image_size=256`` read from its prepared uint8 cache
    (``hashbench data prepare``; the one-off preparation is timed and reported apart), with
    ``train.augment=standard`` (random 224 crop and flip of the stored 256 images, torchvision's
    v2 on uint8 tensors), in a DataLoader with ``--ours-workers`` workers (default 0, hashbench's
    ``train.workers`` default: reading the cache is cheaper than handing batches between
    processes). Its batches are uint8; hashbench normalises them inside the model, on the device
    (:meth:`hashbench.model.DeepHasher.normalize`). Line (b') adds that normalisation on the CPU,
    one thread, as CPU training pays it; the ratio is given for both.
(c) hashbench with ``train.augment_on=device``: the same cache read as it is stored, the crop and
    flip done on each whole batch (:class:`hashbench.augment.BatchAugment`) — here on the CPU, one
    thread; on a GPU that work is the device's.

Both read every image of the training split once per pass (batch 64); the best of ``--repeats``
passes counts. Per core = images per second / the cores the pass had (its workers, at least 1).

    python benchmarks/input_pipeline.py                 # 2,000 images; (a) 2 workers, (b) none
    python benchmarks/input_pipeline.py --images 5000 --workers 4 --ours-workers 2
"""
from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def write_tree(root: Path, n: int, seed: int = 0) -> None:
    """``root/mirflickr/im1..n.jpg`` and the 24 potential annotation files (every image labelled)."""
    from PIL import Image

    from hashbench.datasets.mirflickr25k import POTENTIAL

    rng = np.random.default_rng(seed)
    images = root / "mirflickr"
    images.mkdir(parents=True)
    for i in range(1, n + 1):
        w, h = (500, 375) if i % 3 else (375, 500)
        coarse = rng.integers(0, 256, (h // 25 + 1, w // 25 + 1, 3), dtype=np.uint8)
        img = Image.fromarray(coarse).resize((w, h), Image.BICUBIC)
        img.save(images / f"im{i}.jpg", quality=90)
    ann = root / "mirflickr25k_annotations_v080"
    ann.mkdir()
    for c, name in enumerate(POTENTIAL):
        (ann / f"{name}.txt").write_text("".join(f"{i}\n" for i in range(1, n + 1) if i % len(POTENTIAL) == c
                                                 or (i * 7) % len(POTENTIAL) == c))


class PeerImages(torch.utils.data.Dataset):
    """The peers' way: PIL open → resize 256 → random crop 224 → flip → tensor → normalise."""

    def __init__(self, paths):
        from torchvision import transforms

        self.paths = paths
        self.transform = transforms.Compose([
            transforms.Resize(256), transforms.RandomCrop(224), transforms.RandomHorizontalFlip(),
            transforms.ToTensor(), transforms.Normalize(MEAN, STD)])

    def __len__(self):
        return len(self.paths)

    def __getitem__(self, i):
        from PIL import Image

        with Image.open(self.paths[i]) as img:
            return self.transform(img.convert("RGB")), 0


class _Identity(torch.nn.Module):
    """A stand-in backbone: DeepHasher.normalize is all the benchmark uses of the model."""

    dims, mean, std = (1, 1), MEAN, STD


def timed_pass(dataset, workers: int, normalise: bool, batch_transform=None) -> float:
    """Seconds to read every item once through a DataLoader (batch 64), each batch passed through
    ``batch_transform`` when given."""
    from hashbench.model import DeepHasher

    loader = torch.utils.data.DataLoader(dataset, batch_size=64, shuffle=True, num_workers=workers,
                                         persistent_workers=False)
    net = DeepHasher(_Identity(), 1)
    t0 = time.perf_counter()
    n = 0
    for x, _ in loader:
        if batch_transform is not None:
            x = batch_transform(x)
        if normalise:
            x = net.normalize(x)
        n += len(x)
    assert n == len(dataset)
    return time.perf_counter() - t0


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--images", type=int, default=2000)
    p.add_argument("--workers", type=int, default=2, help="DataLoader workers of (a)")
    p.add_argument("--ours-workers", type=int, default=0, help="DataLoader workers of (b)")
    p.add_argument("--repeats", type=int, default=2)
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    from hashbench.augment import BatchAugment, augmented
    from hashbench.registry import DATASETS, build

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "mirflickr-data"
        t0 = time.perf_counter()
        write_tree(root, args.images)
        print(f"tree: {args.images} JPEGs (500x375 / 375x500, quality 90) written in {time.perf_counter() - t0:.1f} s")
        ds = build(DATASETS, dict(type="mirflickr25k", data_root=str(root), image_size=256, n_query=1,
                                  n_train=args.images - 2, n_val=0, protocol="standard", cache_dir=str(Path(tmp) / "c")))
        t0 = time.perf_counter()
        ds.prepare(workers=max(args.workers, 1))
        print(f"hashbench data prepare (once, {max(args.workers, 1)} workers): {time.perf_counter() - t0:.1f} s")
        split = ds.get("train")
        peer = PeerImages([ds.image_root / r for r in split.rel_paths])
        ours = augmented(split, "standard", train=True)
        assert tuple(ours[0][0].shape) == (3, 224, 224) and tuple(peer[0][0].shape) == (3, 224, 224)
        on_batches = BatchAugment("standard", None, seed=0)
        assert tuple(on_batches(torch.as_tensor(split[0][0])[None]).shape) == (1, 3, 224, 224)
        results = {}
        for name, data, normalise, workers, batch in (
                ("(a) peers: PIL decode + resize + crop + flip + normalise", peer, False, args.workers, None),
                ("(b) hashbench: prepared cache + crop + flip (uint8 batches)", ours, False, args.ours_workers, None),
                ("(b') the same + normalisation on the CPU", ours, True, args.ours_workers, None),
                ("(c) prepared cache, crop + flip on each batch (augment_on=device, here the CPU)", split, False,
                 args.ours_workers, on_batches)):
            best = min(timed_pass(data, workers, normalise, batch) for _ in range(args.repeats))
            cores = max(workers, 1)
            results[name] = len(data) / best / cores
            print(f"{name}: {len(data)} images in {best:.2f} s with {workers} workers, {len(data) / best:.0f} "
                  f"images/s, {results[name]:.0f} per core")
        a, b, b_cpu, c = results.values()
        print(f"ratio (b)/(a) per core: {b / a:.1f}x (target >= 5x); (b')/(a): {b_cpu / a:.1f}x; (c)/(a): {c / a:.1f}x")
        print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
              f"torch {torch.__version__}")


if __name__ == "__main__":
    main()
