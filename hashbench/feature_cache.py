"""Frozen-backbone features, extracted once and cached on disk under a content key.

Classic methods (and deep heads on a frozen backbone) hash fixed features. A sweep of methods ×
code lengths × seeds would otherwise run the backbone over every split again and again; here the
features of one (dataset split, backbone, weights, transform) are computed once and written to

    <cache_dir>/features/<key>.npy      float32 (n, D)
    <cache_dir>/features/<key>.json     manifest: what the key was made of, shape, device, time

The key is the sha256 of everything the features depend on:

- the backbone config (``type``, ``name``, ``checkpoint``, ``lower_stage``, ...);
- the *weights actually loaded*: a hash of every tensor of the backbone's ``state_dict``
  (names, dtypes, shapes, bytes) — a different checkpoint file, an updated file at the same path
  or another random initialisation (seed) gives another key;
- the transform: input shape and dtype of the split's items, the normalisation mean/std, and
  the size (and interpolation) the network resizes them to when it does (``backbone.input_size``);
- the caller's ``split_key`` naming the data (dataset, its parameters, split), plus the number
  of items and :func:`hashbench.datasets.base.split_digest` of the split (its items' ids in order
  and labels): the same names over other images (an edited list file) give another key;
- whether the bypass (lower-stage) feature is appended, and :data:`FEATURE_VERSION`.

Files are written atomically (temporary file, then ``os.replace``), so concurrent runs and
interrupted ones never leave a half-written cache entry.
"""
from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

import numpy as np
import torch

from hashbench.datasets.base import cache_root, split_digest
from hashbench.atomic import atomic_write, atomic_write_text

FEATURE_VERSION = 1  # bump when extract_features changes what it computes


def weights_fingerprint(module: torch.nn.Module) -> str:
    """sha256 of every tensor of ``module.state_dict()``: names, dtypes, shapes and bytes."""
    h = hashlib.sha256()
    for name, t in sorted(module.state_dict().items()):
        t = t.detach().to("cpu").contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def transform_spec(backbone, split) -> dict:
    """The input transform the features depend on: item shape and dtype, normalisation mean/std,
    and the resize to the backbone's ``input_size`` where the items are another size (only then,
    so that entries of images taken as stored keep their keys)."""
    x = split[0][0]
    x = x if isinstance(x, torch.Tensor) else torch.as_tensor(np.asarray(x))
    spec = dict(input_shape=list(x.shape), input_dtype=str(x.dtype).replace("torch.", ""),
                scale="1/255 for uint8" if x.dtype == torch.uint8 else "none",
                mean=[float(v) for v in backbone.mean], std=[float(v) for v in backbone.std])
    size = getattr(backbone, "input_size", None)
    if size and list(size[1:]) != list(x.shape[-2:]):
        spec["resize"] = dict(size=[int(v) for v in size[1:]], interpolation=getattr(backbone, "interpolation",
                                                                                     "bilinear"), antialias=True)
    return spec


def feature_key(backbone_cfg: dict, weights: str, transform: dict, split_key: str, *, n_items: int,
                items: str | None = None, bypass: bool = False) -> tuple[str, dict]:
    """The content key (hex sha256) and the description it was made from."""
    what = dict(version=FEATURE_VERSION, backbone={**backbone_cfg, "frozen": True}, weights_sha256=weights,
                transform=transform, split_key=split_key, n_items=int(n_items), items_sha256=items,
                bypass=bool(bypass))
    text = json.dumps(what, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest(), what


def cached_features(backbone_cfg: dict, split, *, split_key: str, device, cache_dir=None, batch_size: int = 256,
                    backbone=None, weights: str | None = None, bypass: bool = False) -> np.ndarray:
    """Features of every item of ``split`` from the frozen backbone ``backbone_cfg``, cached.

    Parameters
    ----------
    backbone_cfg : dict
        A ``BACKBONES`` config (``type``, ``name``, ...); built with ``frozen=True``. An untrained
        backbone's weights come from the global torch RNG: seed before calling.
    split : Dataset
        Items ``(x, y)``; ``x`` uint8 (3, H, W) images (or float inputs).
    split_key : str
        Names the data: dataset, its parameters and the split, e.g. ``multidigits/<params>/train``.
    device : torch.device or str
        Where to extract on a miss (features are shared across devices).
    cache_dir : path or None
        Root of the cache (``<cache_dir>/features/``); default :func:`hashbench.datasets.base.cache_root`.
    backbone : nn.Module or None
        The backbone already built from ``backbone_cfg`` (frozen), to build it once for several
        splits; its weights are still fingerprinted for the key.
    weights : str or None
        :func:`weights_fingerprint` of ``backbone``, when the caller has it already (several
        splits of one backbone: hashing a ResNet-50's weights once instead of per split).
    bypass : bool
        Append the lower-stage feature (final ⊕ lower), as :func:`hashbench.encode.extract_features`.

    Returns
    -------
    ndarray of shape (n, D), float32
        The same values a fresh :func:`hashbench.encode.extract_features` pass gives.
    """
    from hashbench import encode
    from hashbench.registry import BACKBONES, build

    if backbone is None:
        backbone = build(BACKBONES, {**backbone_cfg, "frozen": True})
    key, what = feature_key(backbone_cfg, weights or weights_fingerprint(backbone), transform_spec(backbone, split),
                            split_key, n_items=len(split), items=split_digest(split), bypass=bypass)
    root = Path(cache_dir) if cache_dir is not None else cache_root()
    path = root / "features" / f"{key}.npy"
    if path.exists():
        try:
            feats = np.load(path)
            if feats.ndim == 2 and len(feats) == len(split):
                return feats
        except (OSError, ValueError):
            pass  # unreadable: extract again and overwrite
    device = torch.device(device)
    t0 = time.perf_counter()
    feats = encode.extract_features(backbone, split, device, batch_size, bypass=bypass)
    seconds = time.perf_counter() - t0
    atomic_write(path, lambda tmp: np.save(tmp, feats))  # tmp ends with .npy: saved as named
    manifest = dict(key=key, **what, shape=list(feats.shape), dtype=str(feats.dtype), device=str(device),
                    extract_seconds=round(seconds, 3), torch=torch.__version__,
                    created=time.strftime("%Y-%m-%dT%H:%M:%S"))
    atomic_write_text(path.with_suffix(".json"), json.dumps(manifest, indent=1, default=str))
    return feats
