"""Backbones: any timm model as a feature extractor for hashing.

The wrapper returns two pooled features per image: the final one and one from a lower stage, so
that a hash layer can use DSRH's *bypass connection* (the paper's fc7 + fc6) on any architecture.
timm's ``features_only`` interface provides the stages generically (CNNs and ViTs alike).

No network: ``pretrained=True`` needs a local ``checkpoint`` file (loaded through timm's
``pretrained_cfg_overlay=dict(file=...)``), unless timm already has the weights in its cache.
"""
from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from hashbench.errors import HashbenchError, suggest
from hashbench.registry import BACKBONES


def _pool(x: torch.Tensor) -> torch.Tensor:
    """Global average pool of a (B, C, H, W) map or a (B, N, C) token sequence to (B, C)."""
    if x.ndim == 4:
        return x.mean(dim=(2, 3))
    if x.ndim == 3:
        return x.mean(dim=1)
    return x


@BACKBONES.register_module(name="timm")
class TimmBackbone(nn.Module):
    """Any timm model; returns (final pooled feature, lower-stage pooled feature).

    Parameters
    ----------
    name : str
        A timm model name (``timm.list_models()``), e.g. ``resnet18``.
    pretrained : bool
        Load pretrained weights (from ``checkpoint`` if given; no download is attempted here).
    checkpoint : str or None
        Path to a local weights file (``.pth``/``.safetensors``) in timm's format.
    lower_stage : int
        Which feature stage feeds the bypass (negative counts from the end; -2 is the stage
        before the last).
    frozen : bool
        Freeze all weights (used by classic methods, which hash fixed features).

    Attributes
    ----------
    dims : tuple[int, int]
        Channels of the (final, lower) features.
    mean, std : tuple[float, ...]
        The normalisation the weights expect (from timm's pretrained config).
    """

    def __init__(self, name: str = "resnet18", *, pretrained: bool = False, checkpoint: str | None = None,
                 lower_stage: int = -2, frozen: bool = False):
        super().__init__()
        import timm

        if name not in timm.list_models() and name not in timm.list_models(pretrained=True):
            raise HashbenchError(
                f"unknown timm model {name!r}; closest: {', '.join(suggest(name, timm.list_models())[:8])}, "
                "... (see timm.list_models())")
        kwargs = {}
        if checkpoint is not None:
            if not Path(checkpoint).is_file():
                raise HashbenchError(f"backbone checkpoint {checkpoint!r} does not exist (a local weights file is needed; nothing is downloaded)")
            pretrained = True
            kwargs["pretrained_cfg_overlay"] = dict(file=str(checkpoint))
        try:
            self.model = timm.create_model(name, pretrained=pretrained, features_only=True,
                                           out_indices=(lower_stage, -1), **kwargs)
        except (IndexError, ValueError) as e:
            raise HashbenchError(f"timm model {name!r} cannot provide feature stage {lower_stage}: {e}") from None
        except (OSError, RuntimeError) as e:
            if pretrained and checkpoint is None:
                raise HashbenchError(
                    f"pretrained weights for {name!r} are not available offline; pass "
                    f"backbone.checkpoint=/path/to/weights or backbone.pretrained=false ({type(e).__name__})") from None
            raise
        channels = self.model.feature_info.channels()
        self.dims = (channels[-1], channels[0])
        cfg = getattr(self.model, "pretrained_cfg", {}) or {}
        self.mean = tuple(cfg.get("mean", (0.485, 0.456, 0.406)))
        self.std = tuple(cfg.get("std", (0.229, 0.224, 0.225)))
        self.frozen = frozen
        if frozen:
            self.requires_grad_(False)
            self.eval()

    def train(self, mode: bool = True):
        return super().train(mode and not self.frozen)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        lower, final = self.model(x)
        return _pool(final), _pool(lower)
