"""HashNet — Deep Learning to Hash by Continuation (Zhangjie Cao, Mingsheng Long, Jianmin Wang,
Philip S. Yu; ICCV 2017, arXiv 1702.00758).

Codes are h = tanh(beta * z), where the scale beta grows during training (continuation), so that
tanh approaches sign and the relaxed codes end up binary. With pairwise labels s_ij in {0, 1} the
loss is the weighted negative log-likelihood

    L = sum_{i != j} w_ij * ( log(1 + exp(alpha <h_i, h_j>)) - alpha * s_ij * <h_i, h_j> )

    w_ij = c_ij * |S| / |S1|   if s_ij = 1  (similar pairs)
    w_ij =        |S| / |S0|   if s_ij = 0  (dissimilar pairs)

S1 and S0 are the similar and dissimilar pairs and S = S1 ∪ S0: the weights balance the two
classes of pairs, which are very unequal in number. c_ij is the paper's continuous similarity,
the cosine of the two label vectors (1 for single-label data); it scales similar pairs only — on
dissimilar pairs the label cosine is 0 and would remove them. ``continuous="none"`` sets c_ij = 1,
as the authors' PyTorch release does. (Their Caffe release, whose COCO and ImageNet prototxts set
``continous_similarity: true``, weights similar pairs by 4 (l_i . l_j)^2 / (|l_i|_1 |l_j|_1) —
the squared cosine for multi-hot labels — and dissimilar pairs by 1; hashbench follows the paper.)

Continuation: the released code sets beta = (1 + gamma * t)^power, updated every ``step_size``
iterations t, with gamma = 0.005, power = 0.5 over 10,000 iterations (beta from 1 to about 7.1).
hashbench's trainer reports progress p in [0, 1] rather than iterations, so beta follows the same
curve on a nominal clock t = p * iterations: beta(p) = (1 + gamma * floor(t / step_size) *
step_size)^power, independent of the real number of steps.

In hashbench the pairs are the ordered pairs i != j of the mini-batch and |S|, |S1|, |S0| are
counted there. The loss of anchor i is sum_{j != i} w_ij (...), the batch loss the mean over anchors
(``reduction="sum"`` sums). log(1 + exp(x)) is computed as softplus(x).

Defaults: alpha = 10 / K (the released code's ``sigmoid_param``; the paper leaves alpha as a
hyper-parameter), binary similarity, c_ij = label cosine, the continuation above, no bypass, and the
hash layer trained with 10x the backbone's learning rate (released code).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from hashbench.errors import HashbenchError
from hashbench.losses import HashLoss, not_self, reduce, similarity as similarity_fn, unit_similarity
from hashbench.method import DeepMethod
from hashbench.registry import LOSSES, METHODS


def balance_weights(s: torch.Tensor, others: torch.Tensor) -> torch.Tensor:
    """w_ij = |S| / |S1| on similar pairs (s > 0), |S| / |S0| on dissimilar ones; shape of ``s``.

    ``others`` masks the pairs that count (i != j). A class with no pair gets weight 0.
    """
    similar = (s > 0) & others
    dissimilar = (s <= 0) & others
    n1, n0 = similar.sum().to(s.dtype), dissimilar.sum().to(s.dtype)
    total = n1 + n0
    w1 = torch.where(n1 > 0, total / n1.clamp_min(1), torch.zeros_like(total))
    w0 = torch.where(n0 > 0, total / n0.clamp_min(1), torch.zeros_like(total))
    return torch.where(similar, w1, torch.where(dissimilar, w0, torch.zeros_like(s)))


@LOSSES.register_module(name="hashnet")
class HashNetLoss(HashLoss):
    """HashNet's class-balanced weighted pairwise cross-entropy on all in-batch pairs.

    Parameters
    ----------
    alpha : float or None
        Scale of the inner product inside the sigmoid; None: 10 / K (released code).
    similarity : str
        How labels become s_ij; must give values in [0, 1] (``binary``, ``cosine``). Pairs with
        s_ij > 0 form S1.
    continuous : str
        The similarity giving c_ij on similar pairs (``cosine``), or ``none`` for c_ij = 1.
    reduction : {"mean", "sum"}
        Over anchors of the batch.

    Called as every :class:`~hashbench.losses.HashLoss`; ``codes`` (B, K) are relaxed codes h in
    (-1, 1). Returns ``loss`` and the detached terms ``similar`` and ``dissimilar`` (the
    weighted likelihood of each class of pairs; they add up to ``loss``).
    """

    def __init__(self, *, alpha: float | None = None, similarity: str = "binary", continuous: str = "cosine",
                 reduction: str = "mean"):
        super().__init__()
        self.alpha = None if alpha is None else float(alpha)
        self.reduction = reduction
        self.similarity_name = similarity
        self.similarity = unit_similarity(similarity, "hashnet")
        self.continuous = continuous
        self.c = None if continuous == "none" else similarity_fn(continuous)

    def forward(self, codes: torch.Tensor, labels: torch.Tensor, indices=None, tuples=None, ref=None
                ) -> dict[str, torch.Tensor]:
        n, k = codes.shape
        alpha = 10.0 / k if self.alpha is None else self.alpha
        s = self.similarity(labels, labels).to(codes.dtype)
        others = not_self(n, torch.arange(n, device=codes.device))
        w = balance_weights(s, others)
        if self.c is not None:
            w = torch.where(s > 0, w * self.c(labels, labels).to(codes.dtype), w)
        x = alpha * (codes @ codes.T)
        nll = w * (F.softplus(x) - s * x)
        zero = torch.zeros_like(nll)
        similar = reduce(torch.where(s > 0, nll, zero).sum(dim=1), self.reduction)
        dissimilar = reduce(torch.where(s > 0, zero, nll).sum(dim=1), self.reduction)
        return dict(loss=similar + dissimilar, similar=similar.detach(), dissimilar=dissimilar.detach())


@METHODS.register_module(name="hashnet")
class HashNet(DeepMethod):
    """HashNet (ICCV 2017): class-balanced pairwise cross-entropy on tanh(beta z), beta grown by continuation."""

    family = "pairwise"

    def __init__(self, n_bits: int, *, alpha: float | None = None, similarity: str = "binary",
                 continuous: str = "cosine", reduction: str = "mean", gamma: float = 0.005, power: float = 0.5,
                 iterations: int = 10000, step_size: int = 200, init_scale: float = 1.0,
                 bypass: bool = False, lr_mult: dict | None = None, head_lr_drop: float | None = None):
        if iterations < 1 or step_size < 1:
            raise HashbenchError(f"hashnet: iterations and step_size must be >= 1; got {iterations}, {step_size}")
        super().__init__(
            n_bits, loss=dict(type="hashnet", alpha=10.0 / n_bits if alpha is None else alpha,
                                       similarity=similarity, continuous=continuous, reduction=reduction),
            relaxation="tanh", bypass=bypass,
            lr_mult={"head.": 10.0} if lr_mult is None else lr_mult,
            head_lr_drop=head_lr_drop)
        self.gamma, self.power, self.init_scale = float(gamma), float(power), float(init_scale)
        self.iterations, self.step_size = int(iterations), int(step_size)

    def beta(self, progress: float) -> float:
        """The continuation scale at training progress p in [0, 1] (see the module docstring)."""
        t = round(min(max(progress, 0.0), 1.0) * self.iterations)
        t -= t % self.step_size
        return self.init_scale * math.pow(1.0 + self.gamma * t, self.power)

    def relax(self, z, progress: float):
        """h = tanh(beta(progress) * z)."""
        return torch.tanh(self.beta(progress) * z)
