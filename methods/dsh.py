"""DSH — Deep Supervised Hashing (Haomiao Liu, Ruiping Wang, Shiguang Shan, Xilin Chen; CVPR 2016,
"Deep Supervised Hashing for Fast Image Retrieval").

The network outputs real values b (no squashing); the binary code is sign(b). For a pair of images
with similarity s in {0, 1} (1: similar; the paper writes y = 1 - s) the loss is

    L_r(b_i, b_j, s) = 1/2 * s * ||b_i - b_j||^2
                     + 1/2 * (1 - s) * max(m - ||b_i - b_j||^2, 0)
                     + alpha * ( || |b_i| - 1 ||_1 + || |b_j| - 1 ||_1 )

a contrastive loss that pulls similar pairs together and pushes dissimilar ones at least a squared
distance m apart, plus a regulariser that pulls every output towards ±1. The paper generates the
pairs online as all unique pairs (i < j) of the mini-batch and sums L_r over them.

In hashbench the loss of anchor i is 1/2 * sum_{j != i} (contrastive term of (i, j)) +
alpha * (B - 1) * || |b_i| - 1 ||_1, so that the sum over anchors is exactly sum_{i<j} L_r; the
batch loss is the mean over anchors (``reduction="sum"`` sums). s comes from the shared label
similarity (default ``binary``, as in the paper).

Defaults are the paper's: margin m = 2K for K-bit codes, alpha = 0.01, identity relaxation (real
outputs), no bypass, one learning rate for all layers.
"""
from __future__ import annotations

import torch

from hashbench.losses import HashLoss, not_self, reduce, unit_similarity
from hashbench.method import DeepMethod
from hashbench.registry import LOSSES, METHODS


@LOSSES.register_module(name="dsh")
class DSHLoss(HashLoss):
    """DSH's contrastive loss on all unique in-batch pairs, plus the alpha * L1 pull towards ±1.

    Parameters
    ----------
    margin : float or None
        m, on the squared Euclidean distance ||b_i - b_j||^2; None: 2K (the paper's choice).
    alpha : float
        Weight of the regulariser || |b| - 1 ||_1.
    similarity : str
        How labels become s; must give values in [0, 1] (``binary``, ``cosine``).
    reduction : {"mean", "sum"}
        Over anchors of the batch.

    Called as every :class:`~hashbench.losses.HashLoss`; ``codes`` (B, K) are real outputs.
    Returns ``loss`` and the detached terms ``contrastive`` and ``regularizer`` (reduced the same
    way, so ``loss = contrastive + alpha * regularizer``).
    """

    def __init__(self, *, margin: float | None = None, alpha: float = 0.01, similarity: str = "binary",
                 reduction: str = "mean"):
        super().__init__()
        self.margin = None if margin is None else float(margin)
        self.alpha, self.reduction = float(alpha), reduction
        self.similarity_name = similarity
        self.similarity = unit_similarity(similarity, "dsh")

    def forward(self, codes: torch.Tensor, labels: torch.Tensor, indices=None, tuples=None, ref=None
                ) -> dict[str, torch.Tensor]:
        n, k = codes.shape
        margin = 2.0 * k if self.margin is None else self.margin
        s = self.similarity(labels, labels).to(codes.dtype)
        # (B, B, K) differences: exact (no cancellation) for large outputs, and cheap at batch sizes used
        d2 = (codes[:, None, :] - codes[None, :, :]).pow(2).sum(dim=2)
        pair = 0.5 * s * d2 + 0.5 * (1 - s) * torch.relu(margin - d2)
        others = not_self(n, torch.arange(n, device=codes.device))
        contrastive = 0.5 * torch.where(others, pair, torch.zeros_like(pair)).sum(dim=1)
        regularizer = (n - 1) * (codes.abs() - 1).abs().sum(dim=1)
        contrastive, regularizer = reduce(contrastive, self.reduction), reduce(regularizer, self.reduction)
        return dict(loss=contrastive + self.alpha * regularizer, contrastive=contrastive.detach(),
                    regularizer=regularizer.detach())


@METHODS.register_module(name="dsh")
class DSH(DeepMethod):
    """Deep Supervised Hashing (CVPR 2016): contrastive loss with margin 2K + L1 pull towards ±1."""

    family = "pairwise"

    def __init__(self, n_bits: int, *, margin: float | None = None, alpha: float = 0.01,
                 similarity: str = "binary", reduction: str = "mean", relaxation: str = "identity",
                 bypass: bool = False, lr_mult: dict | None = None, head_lr_drop: float | None = None):
        super().__init__(
            n_bits, loss=dict(type="dsh", margin=2.0 * n_bits if margin is None else margin, alpha=alpha,
                                   similarity=similarity, reduction=reduction),
            relaxation=relaxation, bypass=bypass, lr_mult=lr_mult, head_lr_drop=head_lr_drop)
