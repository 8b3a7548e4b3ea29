"""Backbones: any timm model, or torchvision's AlexNet and VGG-16, as a feature extractor for hashing.

A backbone returns two features per image, the final one and a lower one, so that a hash layer
can use DSRH's *bypass connection* (the paper's fc7 + fc6): the torchvision family returns fc7 and
fc6 themselves; the timm family, on any architecture, the pooled last stage and the pooled stage
before it (timm's ``features_only`` interface, CNNs and ViTs alike) — a stand-in for fc6.

No network: weights come from a local ``checkpoint`` file (for timm also ``pretrained=True`` when
timm already has the weights in its cache); nothing is downloaded.

The network's input geometry comes from the backbone, not from the dataset (``input_size``): the
size its weights were trained at (timm's pretrained config, the same one
``timm.data.resolve_model_data_config`` reads; torchvision's 224) and the interpolation that
config names; :class:`hashbench.model.DeepHasher` resizes the dataset's stored images to it.
"""
from __future__ import annotations

import logging
from contextlib import contextmanager
from pathlib import Path

import torch
from torch import nn

from hashbench.errors import HashbenchError, suggest
from hashbench.params import Constraint, Interval, Options
from hashbench.registry import BACKBONES


def _pool(x: torch.Tensor) -> torch.Tensor:
    """Global average pool of a (B, C, H, W) map or a (B, N, C) token sequence to (B, C)."""
    if x.ndim == 4:
        return x.mean(dim=(2, 3))
    if x.ndim == 3:
        return x.mean(dim=1)
    return x


def _check_weights_file(path) -> dict[str, torch.Tensor]:
    """The tensors by name of a weights file, or a one-line refusal of a file that is not that: it
    is read with ``torch.load(weights_only=True)`` (or as safetensors), so a file that would run
    code when unpickled, or garbage, never reaches a model's loader."""
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
    return state


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


INPUT_SIZE_WORDS = ("auto", "pretrained", "data")


def input_geometry(cfg: dict) -> tuple[tuple[int, int] | None, str]:
    """What the network of a backbone config takes, from the config alone (nothing is built):
    ``(H, W)`` — None for the images as the dataset stores them — and the resize interpolation.
    A backbone class without an ``input_geometry`` (a plugin's) takes the stored images."""
    from hashbench.registry import lookup

    resolve = getattr(lookup(BACKBONES, cfg["type"]), "input_geometry", None)
    if resolve is None:
        return None, "bilinear"
    return resolve(**{k: v for k, v in cfg.items() if k != "type"})


def hashed_input_size(cfg: dict) -> list[int] | str | None:
    """The input size a backbone config enters the code hash with (see
    :func:`hashbench.results.code_config`): the [H, W] it resolves to (``"data"``: the stored
    images), or None where that is the class's ``unhashed_input_size`` — what it took before
    ``input_size`` was a parameter (timm: the stored images; torchvision: 224) — so those configs
    keep their hashes and records."""
    if cfg["type"] not in BACKBONES:
        return None  # a record's plugin backbone, its plugin not imported: hashed as written
    size, _ = input_geometry(cfg)
    before = getattr(BACKBONES.get(cfg["type"]), "unhashed_input_size", None)
    return None if size == before else list(size) if size else "data"


def _square(n: int) -> tuple[int, int]:
    return int(n), int(n)


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
    input_size : {"auto", "pretrained", "data"} or int
        The side the network takes images at. ``pretrained``: the model's pretrained config
        (``resnet50``: 224, ``vit_base_patch16_384``: 384); ``data``: the dataset's stored images
        as they are; an int: that many pixels square. ``auto`` (default): ``pretrained`` when
        weights are loaded (``pretrained`` or ``checkpoint``) or the architecture fixes its input
        size (ViTs), otherwise ``data`` — a network trained from scratch has no size its filters
        were learned at, and the embedded data's 32-pixel canvases stay cheap.

    Attributes
    ----------
    dims : tuple[int, int]
        Channels of the (final, lower) features.
    mean, std : tuple[float, ...]
        The normalisation the weights expect (from timm's pretrained config).
    input_size : tuple[int, int, int] or None
        (3, H, W) that images are resized to, or None (taken as stored).
    interpolation : str
        ``bilinear`` or ``bicubic``, as the pretrained config names it.
    """

    _parameter_constraints = {"checkpoint": [WeightsFile(), None],
                              "input_size": [Options(*INPUT_SIZE_WORDS), Interval(int, 16, None)]}
    unhashed_input_size = None

    @staticmethod
    def input_geometry(name: str = "resnet18", *, pretrained: bool = False, checkpoint: str | None = None,
                       input_size="auto", **_) -> tuple[tuple[int, int] | None, str]:
        """(H, W) or None, and the interpolation, of ``input_size`` for this model (see the class)."""
        import timm

        cfg = timm.get_pretrained_cfg(name)
        interpolation = cfg.interpolation if cfg is not None and cfg.interpolation == "bicubic" else "bilinear"
        fixed = bool(cfg is not None and cfg.fixed_input_size)
        declared = tuple(int(v) for v in cfg.input_size[1:]) if cfg is not None and cfg.input_size else None
        if input_size == "data" or (input_size == "auto" and not (pretrained or checkpoint or fixed)):
            size = None
        elif input_size in ("auto", "pretrained"):
            if declared is None:
                raise HashbenchError(f"timm model {name!r} has no pretrained config that declares an input size; set "
                                     "backbone.input_size=N (pixels) or backbone.input_size=data")
            size = declared
        else:
            size = _square(input_size)
        if fixed and size != declared:
            raise HashbenchError(f"timm model {name!r} takes only {declared[0]}x{declared[1]} images (a fixed input "
                                 f"size); backbone.input_size={input_size!r} cannot be used with it")
        return size, interpolation

    def __init__(self, name: str = "resnet18", *, pretrained: bool = False, checkpoint: str | None = None,
                 lower_stage: int = -2, frozen: bool = False, input_size="auto"):
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
        size, self.interpolation = self.input_geometry(name, pretrained=pretrained, checkpoint=checkpoint,
                                                       input_size=input_size)
        self.input_size = (3, *size) if size else None
        self.frozen = frozen
        if frozen:
            self.requires_grad_(False)
            self.eval()

    def train(self, mode: bool = True):
        return super().train(mode and not self.frozen)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        lower, final = self.model(x)
        return _pool(final), _pool(lower)


# torchvision's classifier layouts: the indices of fc6 and fc7 in ``model.classifier`` (fc8, the
# ImageNet classifier, is dropped). AlexNet: Dropout, fc6, ReLU, Dropout, fc7, ReLU, fc8;
# VGG-16: fc6, ReLU, Dropout, fc7, ReLU, Dropout, fc8.
FC_LAYERS = {"alexnet": (1, 4), "vgg16": (0, 3)}


@BACKBONES.register_module(name="torchvision")
class TorchvisionBackbone(nn.Module):
    """AlexNet or VGG-16 from torchvision, cut at fc7; returns (fc7, fc6), DSRH's bypass exactly.

    The published tables' backbones, with the fc6/fc7 of DSRH's released network.

    The forward pass is conv layers → pool → ``fc6`` → ReLU → dropout (p = 0.5) → ``fc7`` → ReLU.
    fc6 is returned *before* its dropout and fc7 without one: the hash layer's own dropout
    (a method's ``dropout``) acts on fc7, as in DSRH's released network (fc6 feeds the hash layer
    before dropout, fc7 after it). torchvision's AlexNet also drops out pool5 before fc6; the
    released network does not, and neither does this one.

    Parameters
    ----------
    name : {"alexnet", "vgg16"}
    checkpoint : str or None
        A local torchvision state_dict (e.g. ``alexnet-owt-7be5be79.pth``); its ``classifier.6``
        (fc8) tensors are ignored, every other tensor must fit. None: random initialisation
        (torchvision's); nothing is downloaded.
    frozen : bool
        Freeze all weights (classic methods hash fixed features).
    input_size : {"auto", "pretrained", "data"} or int
        The side the network takes images at: ``auto`` and ``pretrained`` are 224 (the size
        torchvision's ImageNet weights were trained at, whether or not they are loaded: the
        classifier's fc6 expects the 6 × 6 / 7 × 7 map of a 224 image); ``data``: the stored images
        as they are; an int (>= 64): that many pixels square.

    Attributes
    ----------
    dims : tuple[int, int]
        (4096, 4096), the widths of fc7 and fc6.
    mean, std : tuple[float, ...]
        ImageNet's, which torchvision's weights expect.
    input_size : tuple[int, int, int] or None
        (3, 224, 224) by default; None with ``input_size="data"``.
    interpolation : str
        ``bilinear``, as torchvision's own evaluation transforms of these weights.
    """

    _parameter_constraints = {"name": [Options(*FC_LAYERS)], "checkpoint": [WeightsFile(), None],
                              "input_size": [Options(*INPUT_SIZE_WORDS), Interval(int, 64, None)]}
    unhashed_input_size = (224, 224)

    @staticmethod
    def input_geometry(name: str = "alexnet", *, input_size="auto", **_) -> tuple[tuple[int, int] | None, str]:
        """(H, W) or None, and the interpolation, of ``input_size`` (see the class)."""
        if input_size == "data":
            return None, "bilinear"
        return _square(224 if input_size in ("auto", "pretrained") else input_size), "bilinear"

    def __init__(self, name: str = "alexnet", *, checkpoint: str | None = None, frozen: bool = False,
                 input_size="auto"):
        super().__init__()
        import torchvision

        if name not in FC_LAYERS:
            raise HashbenchError(f"unknown torchvision backbone {name!r}; valid: {', '.join(FC_LAYERS)}")
        self.name = name
        self.model = getattr(torchvision.models, name)(weights=None)
        self.model.classifier[6] = nn.Identity()
        if checkpoint is not None:
            self._load(checkpoint)
        i6, i7 = FC_LAYERS[name]
        self.fc6, self.fc7 = i6, i7
        self.drop6 = nn.Dropout(0.5)
        self.dims = (self.model.classifier[i7].out_features, self.model.classifier[i6].out_features)
        self.mean, self.std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
        size, self.interpolation = self.input_geometry(name, input_size=input_size)
        self.input_size = (3, *size) if size else None
        self.frozen = frozen
        if frozen:
            self.requires_grad_(False)
            self.eval()

    def _load(self, checkpoint) -> None:
        state = {k: v for k, v in _check_weights_file(checkpoint).items() if not k.startswith("classifier.6.")}
        mine = self.model.state_dict()
        missing = [k for k in mine if k not in state]
        extra = [k for k in state if k not in mine]
        wrong = [k for k in mine if k in state and state[k].shape != mine[k].shape]
        if missing or extra or wrong:
            what = (f"{len(missing)} of its tensors are not in the file (e.g. {missing[0]!r})" if missing else
                    f"the file has tensors it does not (e.g. {extra[0]!r})" if extra else
                    f"{wrong[0]!r} has shape {tuple(state[wrong[0]].shape)} in the file, "
                    f"{tuple(mine[wrong[0]].shape)} in the model")
            raise HashbenchError(f"backbone checkpoint {str(checkpoint)!r} does not fit torchvision {self.name}: {what}")
        self.model.load_state_dict(state)

    def train(self, mode: bool = True):
        return super().train(mode and not self.frozen)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        m = self.model
        x = torch.flatten(m.avgpool(m.features(x)), 1)
        fc6 = torch.relu(m.classifier[self.fc6](x))
        fc7 = torch.relu(m.classifier[self.fc7](self.drop6(fc6)))
        return fc7, fc6
