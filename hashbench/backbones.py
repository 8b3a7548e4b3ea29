"""Backbones: any timm model as a feature extractor for hashing.

The wrapper returns two pooled features per image: the final one and one from a lower stage, so
that a hash layer can use DSRH's *bypass connection* (the paper's fc7 + fc6) on any architecture.
timm's ``features_only`` interface provides the stages generically (CNNs and ViTs alike).

No network: ``pretrained=True`` needs a local ``checkpoint`` file (loaded through timm's
``pretrained_cfg_overlay=dict(file=...)``), unless timm already has the weights in its cache.
"""
from __future__ import annotations

import logging
from contextlib import contextmanager
from pathlib import Path

import torch
from torch import nn

from hashbench.errors import HashbenchError, suggest
from hashbench.params import Constraint
from hashbench.registry import BACKBONES


def _pool(x: torch.Tensor) -> torch.Tensor:
    """Global average pool of a (B, C, H, W) map or a (B, N, C) token sequence to (B, C)."""
    if x.ndim == 4:
        return x.mean(dim=(2, 3))
    if x.ndim == 3:
        return x.mean(dim=1)
    return x


def _check_weights_file(path) -> None:
    """Refuse, in one line, a weights file that is not tensors by name: it is read first with
    ``torch.load(weights_only=True)`` (or as safetensors), so a file that would run code when
    unpickled, or garbage, never reaches timm's loader."""
    path = str(path)
    try:
        if path.endswith(".safetensors"):
            from safetensors.torch import load_file

            state = load_file(path)
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - every unreadable file gets the same answer
        lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
        hostile = next((ln for ln in lines if "unsupported global" in ln.lower()), None)
        why = (f"unpickling it would call code ({hostile[:120]})" if hostile
               else "not a torch.save or safetensors file of tensors")
        raise HashbenchError(f"backbone checkpoint {path!r} refused: {why}; expected a state_dict of tensors "
                             "(read with torch.load(weights_only=True), or .safetensors)") from None
    for key in ("state_dict", "model", "state_dict_ema"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
            break
    if not isinstance(state, dict) or not state or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise HashbenchError(f"backbone checkpoint {path!r} holds no tensors by name (a state_dict); got "
                             f"{type(state).__name__}")


class _MissingKeys(logging.Handler):
    """Collects the model keys timm reports missing while it loads pretrained weights."""

    def __init__(self):
        super().__init__(logging.INFO)
        self.keys: list[str] = []

    def emit(self, record):
        text = record.getMessage()
        if text.startswith("Missing keys ("):
            self.keys += [k.strip() for k in text[len("Missing keys ("):text.find(")")].split(",") if k.strip()]

    @contextmanager
    def watching(self):
        logger = logging.getLogger("timm.models._builder")
        level = logger.level
        logger.addHandler(self)
        logger.setLevel(logging.INFO)
        try:
            yield self
        finally:
            logger.removeHandler(self)
            logger.setLevel(level)


class WeightsFile(Constraint):
    """A local weights file that :func:`_check_weights_file` accepts (checked when the config is,
    before any work: a bad file is refused in one line saying why)."""

    def accepts(self, value):
        if not isinstance(value, (str, Path)) or not str(value):
            return False, value
        if not Path(value).expanduser().is_file():
            raise HashbenchError(f"backbone.checkpoint {str(value)!r} does not exist (a local weights file is "
                                 "needed; nothing is downloaded)")
        _check_weights_file(Path(value).expanduser())
        return True, value

    def describe(self) -> str:
        return "a local weights file (a state_dict of tensors)"


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

    _parameter_constraints = {"checkpoint": [WeightsFile(), None]}

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
            _check_weights_file(checkpoint)
            pretrained = True
            kwargs["pretrained_cfg_overlay"] = dict(file=str(checkpoint))
        missing = _MissingKeys()
        try:
            with missing.watching():
                self.model = timm.create_model(name, pretrained=pretrained, features_only=True,
                                               out_indices=(lower_stage, -1), **kwargs)
        except (IndexError, ValueError) as e:
            raise HashbenchError(f"timm model {name!r} cannot provide feature stage {lower_stage}: {e}") from None
        except (OSError, RuntimeError, KeyError) as e:
            if pretrained and checkpoint is None:
                raise HashbenchError(
                    f"pretrained weights for {name!r} are not available offline; pass "
                    f"backbone.checkpoint=/path/to/weights or backbone.pretrained=false ({type(e).__name__})") from None
            if checkpoint is not None:
                first = " ".join(ln.strip() for ln in str(e).strip().splitlines()[:2])[:200]
                raise HashbenchError(f"backbone checkpoint {checkpoint!r} does not fit timm model {name!r} "
                                     f"({type(e).__name__}: {first})") from None
            raise
        # keys of parts the feature extractor drops (the classifier) do not matter; the extractor
        # names nested modules with "_" for "."
        kept = {k.replace("_", ".") for k in self.model.state_dict()}
        missing.keys = [k for k in missing.keys if k.replace("_", ".") in kept]
        if checkpoint is not None and missing.keys:
            # timm loads feature extractors non-strictly: a file of another model would leave these
            # tensors at their random initialisation without a word
            raise HashbenchError(f"backbone checkpoint {checkpoint!r} does not fit timm model {name!r}: "
                                 f"{len(missing.keys)} of its tensors are not in the file (e.g. {missing.keys[0]!r})")
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
