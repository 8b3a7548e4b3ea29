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
    """

    def __init__(self, dims: tuple[int, int], n_bits: int, *, bypass: bool = True, dropout: float = 0.0,
                 code_norm: str | None = None):
        super().__init__()
        if code_norm not in (None, "batch"):
            raise ValueError(f"code_norm must be None or 'batch'; got {code_norm!r}")  # a method's own bug
        self.final = nn.Linear(dims[0], n_bits)
        self.lower = nn.Linear(dims[1], n_bits, bias=False) if bypass else None
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
    loading stays uint8 and cheap.
    """

    def __init__(self, backbone: nn.Module, n_bits: int, *, bypass: bool = True, dropout: float = 0.0,
                 code_norm: str | None = None):
        super().__init__()
        self.backbone = backbone
        self.head = HashHead(backbone.dims, n_bits, bypass=bypass, dropout=dropout, code_norm=code_norm)
        self.register_buffer("mean", torch.tensor(backbone.mean).view(1, -1, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(backbone.std).view(1, -1, 1, 1), persistent=False)

    @classmethod
    def for_method(cls, backbone: nn.Module, method, **kwargs) -> "DeepHasher":
        """The network a :class:`~hashbench.method.DeepMethod` trains: its code length, bypass and code norm."""
        return cls(backbone, method.n_bits, bypass=method.bypass, code_norm=method.code_norm, **kwargs)

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        if x.dtype == torch.uint8:
            x = x.float().div_(255.0)
        return (x - self.mean) / self.std

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(*self.backbone(self.normalize(x)))
