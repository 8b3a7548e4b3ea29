"""The deep hashing network: backbone → hash layer → K real outputs z (pre-activation).

Binary codes are ``z > 0`` (for the sigmoid relaxation, ``sigmoid(z) > 0.5``). Relaxation of z into
(-1, 1) for the loss belongs to the method (:class:`hashbench.method.DeepMethod`).
"""
from __future__ import annotations

import torch
from torch import nn


class HashHead(nn.Module):
    """Hash layer ``z = W_f f + W_l l + c``: the final feature f and, with ``bypass``, a lower one l;
    with ``code_norm="batch"`` z is then batch-normalised (``head.norm``; running statistics at
    encoding), as OrthoHash's latent layer is.

    The two branches are separate linear maps so that each can have its own learning rate, as in
    DSRH's released code (fc7 branch, fc6 branch, bias): their parameters are ``head.final.weight``,
    ``head.final.bias`` and ``head.lower.weight`` for a method's ``lr_mult`` patterns.

    ``init=dict(std=s, bias=c)``: weights N(0, s²) on both branches and a constant bias c (DSRH's
    released config is std 0.01, bias 1: every bit starts at sigmoid(1) ≈ 0.73); None:
    ``nn.Linear``'s.
    """

    def __init__(self, dims: tuple[int, int], n_bits: int, *, bypass: bool = True, dropout: float = 0.0,
                 code_norm: str | None = None, init: dict | None = None):
        super().__init__()
        if code_norm not in (None, "batch"):
            raise ValueError(f"code_norm must be None or 'batch'; got {code_norm!r}")  # a method's own bug
        self.final = nn.Linear(dims[0], n_bits)
        self.lower = nn.Linear(dims[1], n_bits, bias=False) if bypass else None
        if init is not None:  # checked by DeepMethod when the config is
            for layer in (self.final, self.lower):
                if layer is not None:
                    nn.init.normal_(layer.weight, 0.0, float(init["std"]))
            nn.init.constant_(self.final.bias, float(init["bias"]))
        self.dropout = nn.Dropout(dropout)
        self.norm = nn.BatchNorm1d(n_bits) if code_norm == "batch" else None

    def forward(self, final: torch.Tensor, lower: torch.Tensor) -> torch.Tensor:
        z = self.final(self.dropout(final))
        if self.lower is not None:
            z = z + self.lower(lower)
        return z if self.norm is None else self.norm(z)


class DeepHasher(nn.Module):
    """Backbone + hash head. Takes uint8 images (B, 3, H, W) (or floats in [0, 1]), returns z (B, K).

    Normalisation with the backbone's own mean/std happens here, on the model's device, so data
    loading stays uint8 and cheap. A backbone that declares an ``input_size`` (C, H, W) (see
    ``backbone.input_size``: by default the size its weights were trained at) gets images of another
    size resized to it here, antialiased, with the backbone's ``interpolation`` (bilinear unless it
    names bicubic); one whose ``input_size`` is None takes the dataset's images as they are.
    """

    def __init__(self, backbone: nn.Module, n_bits: int, *, bypass: bool = True, dropout: float = 0.0,
                 code_norm: str | None = None, head_init: dict | None = None):
        super().__init__()
        self.backbone = backbone
        self.head = HashHead(backbone.dims, n_bits, bypass=bypass, dropout=dropout, code_norm=code_norm,
                             init=head_init)
        self.register_buffer("mean", torch.tensor(backbone.mean).view(1, -1, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(backbone.std).view(1, -1, 1, 1), persistent=False)
        size = getattr(backbone, "input_size", None)
        self.input_hw = tuple(size[1:]) if size else None
        self.interpolation = getattr(backbone, "interpolation", "bilinear")

    @classmethod
    def for_method(cls, backbone: nn.Module, method, **kwargs) -> "DeepHasher":
        """The network a :class:`~hashbench.method.DeepMethod` trains: its code length, bypass, code
        norm, dropout and hash-layer initialisation."""
        return cls(backbone, method.n_bits, bypass=method.bypass, code_norm=method.code_norm,
                   dropout=method.dropout, head_init=method.head_init, **kwargs)

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        owned = x.dtype == torch.uint8  # a tensor made here may be normalised in place (no copies)
        if owned:
            x = x.float().div_(255.0)
        if self.input_hw is not None and tuple(x.shape[-2:]) != self.input_hw:
            x = nn.functional.interpolate(x, size=self.input_hw, mode=self.interpolation, align_corners=False,
                                          antialias=True)
            owned = True
        return x.sub_(self.mean).div_(self.std) if owned else (x - self.mean) / self.std

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(*self.backbone(self.normalize(x)))
