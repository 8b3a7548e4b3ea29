"""DPSH — Deep Pairwise-Supervised Hashing (Wu-Jun Li, Sheng Wang, Wang-Cheng Kang; IJCAI 2016,
"Feature Learning based Deep Supervised Hashing with Pairwise Labels", arXiv 1511.03855).

The network's hash layer outputs real values u_i (no squashing); the binary code is b_i = sign(u_i).
With pairwise labels s_ij in {0, 1} (1: the two images are similar) the loss is

    L = - sum_{i != j} ( s_ij * theta_ij - log(1 + exp(theta_ij)) )  +  eta * sum_i ||b_i - u_i||^2
    theta_ij = 1/2 * u_i . u_j

The first term is the negative log-likelihood of the labels under p(s_ij = 1 | u) = sigmoid(theta_ij)
(for ±1 codes, theta_ij = K/2 - Hamming distance); the second pulls u towards its binary code.
log(1 + exp(theta)) is computed as softplus(theta), which stays finite for saturated outputs.

In hashbench the pairs are those of the mini-batch (every ordered pair i != j). The loss of anchor i
is sum_{j != i} [softplus(theta_ij) - s_ij theta_ij] + eta ||b_i - u_i||^2, so the sum over anchors
is the paper's objective on the batch; the batch loss is the mean over anchors (``reduction="sum"``
sums). s_ij comes from the shared label similarity (default ``binary``: share at least one label,
as in the paper; ``cosine`` gives a soft target in [0, 1]).

Defaults: eta = 10 (the paper's setting), identity relaxation (u is the hash layer's linear
output), no bypass connection and one learning rate for all layers (the paper trains CNN-F end to
end with a plain linear hash layer).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from hashbench.losses import not_self, quantization_error, reduce, unit_similarity
from hashbench.method import DeepMethod
from hashbench.registry import LOSSES, METHODS


@LOSSES.register_module(name="dpsh")
class DPSHLoss(nn.Module):
    """DPSH's pairwise negative log-likelihood on all in-batch pairs, plus eta * quantisation error.

    Parameters
    ----------
    eta : float
        Weight of the quantisation term ||b - u||^2.
    similarity : str
        How labels become s_ij; must give values in [0, 1] (``binary``, ``cosine``).
    reduction : {"mean", "sum"}
        Over anchors of the batch.

    Called as ``loss(codes, labels)``: ``codes`` (B, K) real outputs u, ``labels`` (B, C) multi-hot.
    Returns ``loss`` and the detached terms ``likelihood`` and ``quantization`` (reduced the same
    way, so ``loss = likelihood + eta * quantization``).
    """

    def __init__(self, *, eta: float = 10.0, similarity: str = "binary", reduction: str = "mean"):
        super().__init__()
        self.eta, self.reduction = float(eta), reduction
        self.similarity_name = similarity
        self.similarity = unit_similarity(similarity, "dpsh")

    def forward(self, codes: torch.Tensor, labels: torch.Tensor) -> dict[str, torch.Tensor]:
        s = self.similarity(labels, labels).to(codes.dtype)
        theta = 0.5 * codes @ codes.T
        nll = F.softplus(theta) - s * theta
        others = not_self(len(codes), torch.arange(len(codes), device=codes.device))
        pairs = torch.where(others, nll, torch.zeros_like(nll)).sum(dim=1)
        quant = quantization_error(codes)
        likelihood, quantization = reduce(pairs, self.reduction), reduce(quant, self.reduction)
        return dict(loss=likelihood + self.eta * quantization, likelihood=likelihood.detach(),
                    quantization=quantization.detach())


@METHODS.register_module(name="dpsh")
class DPSH(DeepMethod):
    """Deep Pairwise-Supervised Hashing (IJCAI 2016): pairwise likelihood + quantisation, linear codes."""

    def __init__(self, n_bits: int, *, eta: float = 10.0, similarity: str = "binary", reduction: str = "mean",
                 relaxation: str = "identity", bypass: bool = False, lr_mult: dict | None = None,
                 head_lr_drop: float | None = None):
        super().__init__(n_bits, loss=DPSHLoss(eta=eta, similarity=similarity, reduction=reduction),
                         relaxation=relaxation, bypass=bypass, lr_mult=lr_mult, head_lr_drop=head_lr_drop)
