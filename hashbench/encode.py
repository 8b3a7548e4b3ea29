"""From a trained network (or a frozen backbone) to arrays: binary codes and features."""
from __future__ import annotations

import numpy as np
import torch

from hashbench.device import autocast
from hashbench.progress import Progress
from hashbench.sampling import data_loader


@torch.no_grad()
def encode_deep(model, split, device: torch.device, batch_size: int = 256, precision: str = "fp32") -> np.ndarray:
    """Binary codes of every item of ``split``: ``uint8`` (n, K), bit = 1 where z > 0."""
    model.to(device).eval()
    codes = []
    for x, _ in data_loader(split, batch_size, shuffle=False, device=device):
        with autocast(device, precision):
            z = model(x.to(device, non_blocking=True))
        codes.append((z > 0).to(torch.uint8))
    return torch.cat(codes).cpu().numpy()


@torch.no_grad()
def extract_features(backbone, split, device: torch.device, batch_size: int = 256, *, bypass: bool = False,
                     label: str = "features") -> np.ndarray:
    """Frozen-backbone features of every item: ``float32`` (n, D) (final ⊕ lower with ``bypass``)."""
    from hashbench.model import DeepHasher

    net = DeepHasher(backbone, 1).to(device).eval()
    feats = []
    loader = data_loader(split, batch_size, shuffle=False, device=device)
    with Progress(f"{label} extracting", "batch", len(loader)) as progress:
        for x, _ in loader:
            final, lower = backbone(net.normalize(x.to(device, non_blocking=True)))
            feats.append(torch.cat([final, lower], 1) if bypass else final)
            progress.advance()
    return torch.cat(feats).float().cpu().numpy()
