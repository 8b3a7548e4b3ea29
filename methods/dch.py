"""DCH — Deep Cauchy Hashing for Hamming Space Retrieval (Yue Cao, Mingsheng Long, Bin Liu, Jianmin
Wang; CVPR 2018).

Codes are h = tanh(z). The distance between two codes is the normalised Hamming distance (paper
Eq. 6), computed from their cosine:

    d(h_i, h_j) = K/2 * (1 - cos(h_i, h_j) + eps)

which equals the Hamming distance for ±1 codes (eps aside). The probability that a pair is similar
is a Cauchy function of that distance, sigma(d) = gamma / (gamma + d) (Eq. 4), and the loss is the
class-balanced cross-entropy of the pairwise labels s_ij in {0, 1} (Eq. 8) plus a Cauchy
quantisation loss that pulls |h| towards the all-ones vector (Eq. 9):

    L_ij = w_ij * ( s_ij * log(d_ij / gamma) + log(1 + gamma / d_ij) )
    Q_i  = log(1 + d(|h_i|, 1) / gamma)

    w_ij = |S| / |S1|  if s_ij = 1,   |S| / |S0|  if s_ij = 0        (Eq. 2, as HashNet's)

S1 and S0 are the similar and dissimilar pairs of the mini-batch (ordered pairs i != j) and
S = S1 ∪ S0. The weights come from :func:`hashbench.methods.hashnet.balance_weights`.

Reduction (the released code's): the cross-entropy is averaged over the pairs and the quantisation
over the items, ``mean_{i != j} L_ij + lambda * mean_i Q_i``. In hashbench the loss of anchor i is
``1/(B-1) sum_{j != i} L_ij + lambda * Q_i`` and the batch loss the mean over anchors (the same
value; ``reduction="sum"`` sums over anchors).

Multi-label data: s_ij = 1 when the two items share at least one label (the shared ``binary``
similarity; the released code clips the label inner product to [0, 1], the same thing).

Paper and released code (thuml/DeepHash, ``DeepHash/model/dch/dch.py``) differ; hashbench follows
the paper, and the released code's choices are reachable:

- distance: the paper's cosine distance above (``distance="cosine"``); the released code's active
  call uses ``normed=False``, the squared Euclidean distance ``||h_i - h_j||^2 + 0.001``
  (``distance="euclidean"``);
- quantisation: the paper's Cauchy loss Q_i (``quantization="cauchy"``); the released code uses
  ``mean_k (|h_ik| - 1)^2`` (``quantization="square"``), with weight ``q_lambda = 0`` by default in
  ``examples/dch/train_val_script.py`` (``method.q_lambda=0``);
- class-balance weights: the paper's Eq. 2 above; the released code weighs dissimilar pairs by 1 and
  similar pairs by (all B^2 entries) / (similar entries, diagonal included) — not reachable.

Constants:

- gamma = 20: the Cauchy scale. The paper selects gamma and lambda by cross-validation; 20 is the
  default of the released ``examples/dch/train_val_script.py`` (``--gamma``). (A maintainer of the
  release wrote in thulab/DeepHash issue #38 that the paper's runs used gamma = 30:
  ``method.gamma=30``.)
- lambda = 0.1 (``q_lambda``): the weight of the quantisation loss; the release disables it by
  default (0), so the value is that of the widely used re-implementation swuxyj/DeepHash-pytorch
  (``DCH.py``: gamma 20, lambda 0.1).
- eps = 1e-6 inside the cosine distance and 0.001 added to the Euclidean one: the released code's.
- tanh activation (``--with-tanh``, default true) and the hash layer trained at 10x the backbone's
  learning rate (the release multiplies the last layer's weight gradient by 10, its bias's by 20):
  ``lr_mult={"head.": 10}`` as for HashNet. No bypass connection.
"""
from __future__ import annotations

import math

import torch

from hashbench.losses import HashLoss, not_self, reduce, unit_similarity
from hashbench.method import DeepMethod
from hashbench.methods.hashnet import balance_weights
from hashbench.params import Interval, Options
from hashbench.registry import LOSSES, METHODS

DISTANCES = ("cosine", "euclidean")
QUANTIZATIONS = ("cauchy", "square")
COSINE_EPS = 1e-6  # released code: K/2 * (1 - cos + 1e-6)
EUCLIDEAN_EPS = 1e-3  # released code: ||u_i - u_j||^2 + 0.001

_CONSTRAINTS = {
    "gamma": [Interval(float, 0, None, closed="neither")],
    "q_lambda": [Interval(float, 0, None)],
    "distance": [Options(*DISTANCES)],
    "quantization": [Options(*QUANTIZATIONS)],
    "reduction": [Options("mean", "sum")],
}


def cosine_distance(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """DCH's normalised Hamming distance K/2 (1 - cos(a_i, b_j) + eps) between rows; (n, m)."""
    k = a.shape[1]
    norms = a.norm(dim=1, keepdim=True) * b.norm(dim=1, keepdim=True).T
    cos = (a @ b.T) / norms.clamp_min(1e-12)
    return 0.5 * k * (1.0 - cos + COSINE_EPS)


@LOSSES.register_module(name="dch")
class DCHLoss(HashLoss):
    """DCH's class-balanced Cauchy cross-entropy on in-batch pairs plus lambda * quantisation.

    Parameters
    ----------
    gamma : float
        Scale of the Cauchy distribution (> 0).
    q_lambda : float
        Weight of the quantisation loss.
    distance : {"cosine", "euclidean"}
        The paper's normalised Hamming distance, or the released code's squared Euclidean one.
    quantization : {"cauchy", "square"}
        The paper's log(1 + d(|h|, 1) / gamma), or the released code's mean_k (|h_k| - 1)^2.
    similarity : str
        How labels become s_ij; must give values in [0, 1] (``binary``, the paper's; ``cosine``).
        Pairs with s_ij > 0 form S1.
    reduction : {"mean", "sum"}
        Over anchors of the batch.

    ``codes`` (B, K) are relaxed codes h in (-1, 1). Returns ``loss`` and the detached terms
    ``cauchy`` and ``quantization`` (reduced the same way: ``loss = cauchy + q_lambda * quantization``).
    """

    _parameter_constraints = dict(_CONSTRAINTS)

    def __init__(self, *, gamma: float = 20.0, q_lambda: float = 0.1, distance: str = "cosine",
                 quantization: str = "cauchy", similarity: str = "binary", reduction: str = "mean"):
        super().__init__()
        self.gamma, self.q_lambda = float(gamma), float(q_lambda)
        self.distance, self.quantization, self.reduction = distance, quantization, reduction
        self.similarity_name = similarity
        self.similarity = unit_similarity(similarity, "dch")

    def pair_distance(self, codes: torch.Tensor) -> torch.Tensor:
        """(B, B) distances d_ij the Cauchy probability reads."""
        if self.distance == "cosine":
            return cosine_distance(codes, codes)
        # (B, B, K) differences: exact for nearly equal codes, and cheap at batch sizes used
        return (codes[:, None, :] - codes[None, :, :]).pow(2).sum(dim=2) + EUCLIDEAN_EPS

    def item_quantization(self, codes: torch.Tensor) -> torch.Tensor:
        """Per-item quantisation loss Q_i, shape (B,)."""
        if self.quantization == "cauchy":
            d = cosine_distance(codes.abs(), torch.ones_like(codes[:1])).squeeze(1)
            return torch.log1p(d / self.gamma)
        return (codes.abs() - 1).pow(2).mean(dim=1)

    def forward(self, codes: torch.Tensor, labels: torch.Tensor, indices=None, tuples=None, ref=None
                ) -> dict[str, torch.Tensor]:
        n = len(codes)
        s = self.similarity(labels, labels).to(codes.dtype)
        others = not_self(n, torch.arange(n, device=codes.device))
        w = balance_weights(s, others)
        d = self.pair_distance(codes)
        # s log(d/gamma) + log(1 + gamma/d) = log(d + gamma) - s log(gamma) - (1 - s) log(d); d > 0
        ce = torch.log(d + self.gamma) - s * math.log(self.gamma) - (1 - s) * torch.log(d)
        pairs = torch.where(others, w * ce, torch.zeros_like(ce)).sum(dim=1) / max(n - 1, 1)
        cauchy = reduce(pairs, self.reduction)
        quantization = reduce(self.item_quantization(codes), self.reduction)
        return dict(loss=cauchy + self.q_lambda * quantization, cauchy=cauchy.detach(),
                    quantization=quantization.detach())


@METHODS.register_module(name="dch")
class DCH(DeepMethod):
    """Deep Cauchy Hashing (CVPR 2018): balanced Cauchy cross-entropy on cosine Hamming distance + quantisation."""

    family = "pairwise"
    _parameter_constraints = dict(_CONSTRAINTS)

    def __init__(self, n_bits: int, *, gamma: float = 20.0, q_lambda: float = 0.1, distance: str = "cosine",
                 quantization: str = "cauchy", similarity: str = "binary", reduction: str = "mean",
                 relaxation: str = "tanh", bypass: bool = False, lr_mult: dict | None = None,
                 head_lr_drop: float | None = None):
        super().__init__(
            n_bits, loss=dict(type="dch", gamma=gamma, q_lambda=q_lambda, distance=distance,
                              quantization=quantization, similarity=similarity, reduction=reduction),
            relaxation=relaxation, bypass=bypass, lr_mult={"head.": 10.0} if lr_mult is None else lr_mult,
            head_lr_drop=head_lr_drop)
