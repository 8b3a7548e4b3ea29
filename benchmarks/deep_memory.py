"""Memory of encoding a NUS-WIDE-size database with a deep hashing network: codes only, no features.

A deep run encodes its query and database splits with :func:`hashbench.encode.encode_deep`, which
keeps each batch's codes (uint8, n x K) and drops the batch's activations. This benchmark
measures, each in a fresh process so that every peak RSS (``VmHWM``) is its own:

- *encode*: ``encode_deep`` over a database of N images (held in memory as uint8, as
  ``multidigits`` holds them);
- the reference, in the same run: :func:`hashbench.encode.extract_features` over the same images,
  which keeps the (N, D) float32 features a method holding features would keep.

Printed: the growth of peak RSS during each (above the images already in memory), in bytes and as
multiples of the codes' and the features' size.

    python benchmarks/deep_memory.py                   # N = 193,000 (NUS-WIDE-21's database), 32x32
    python benchmarks/deep_memory.py --n 20000         # a quick look
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import time

from memory import peak_rss_bytes, run_child  # the sibling benchmark: same measurement, same children


def rss_bytes() -> int:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmRSS:"))


def child(kind: str, n: int, size: int, bits: int, backbone: str, batch: int) -> dict:
    import numpy as np
    import torch

    from hashbench.datasets.base import ArraySplit
    from hashbench.encode import encode_deep, extract_features
    from hashbench.model import DeepHasher
    from hashbench.registry import BACKBONES, build

    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (n, 3, size, size), dtype=np.uint8)
    labels = (rng.random((n, 21)) < 0.1).astype(np.uint8)
    split = ArraySplit(images, labels)
    del images
    net = build(BACKBONES, dict(type="timm", name=backbone))
    model = DeepHasher(net, bits).eval()
    encode_deep(model, ArraySplit(np.zeros((2, 3, size, size), np.uint8), labels[:2]), torch.device("cpu"))  # warm
    before = rss_bytes()
    t0 = time.perf_counter()
    if kind == "encode":
        out = encode_deep(model, split, torch.device("cpu"), batch)
    else:
        out = extract_features(net, split, torch.device("cpu"), batch)
    seconds = time.perf_counter() - t0
    return dict(grew=peak_rss_bytes() - before, seconds=seconds, shape=list(out.shape), dtype=str(out.dtype),
                nbytes=int(out.nbytes), dim=int(net.dims[0]))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=193_000, help="database images (default: NUS-WIDE-21's 193,000)")
    p.add_argument("--size", type=int, default=32, help="image side in pixels")
    p.add_argument("--bits", type=int, default=64)
    p.add_argument("--backbone", default="test_resnet", help="a timm model name (random weights)")
    p.add_argument("--batch", type=int, default=256, help="train.encode_batch_size")
    p.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        kind, n, size, bits, backbone, batch = args.child
        print(json.dumps(child(kind, int(n), int(size), int(bits), backbone, int(batch))))
        return
    words = [str(v) for v in (args.n, args.size, args.bits, args.backbone, args.batch)]
    print(f"deep_memory: {args.n:,} images {args.size}x{args.size} ({args.n * 3 * args.size ** 2 / 1e6:,.0f} MB "
          f"uint8), {args.backbone}, {args.bits} bits, batch {args.batch}; "
          f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs")
    enc = run_child(["encode", *words], __file__)
    ref = run_child(["features", *words], __file__)
    codes, feats = enc["nbytes"], ref["nbytes"]
    print(f"  encode_deep:       peak RSS grew {enc['grew'] / 1e6:8.1f} MB = {enc['grew'] / codes:6.2f}x the codes "
          f"({codes / 1e6:.1f} MB, {enc['dtype']} {enc['shape']}), {enc['grew'] / feats:.3f}x the features; "
          f"{enc['seconds']:.1f} s")
    print(f"  extract_features:  peak RSS grew {ref['grew'] / 1e6:8.1f} MB = {ref['grew'] / feats:6.2f}x the features "
          f"({feats / 1e6:.1f} MB, D = {ref['dim']}); {ref['seconds']:.1f} s (the reference)")
    print(f"  encode_deep's growth / the reference's: {enc['grew'] / max(ref['grew'], 1):.3f}")


if __name__ == "__main__":
    main()
