"""DHN — Deep Hashing Network (Han Zhu, Mingsheng Long, Jianmin Wang, Yue Cao; AAAI 2016, "Deep
Hashing Network for Efficient Similarity Retrieval"; not on arXiv).

The hash layer's outputs are squashed by tanh, z = tanh(W f + c), and the code is sign(z). With
pairwise labels s_ij in {0, 1} (1: the two images share a label) the paper's objective is

    C = sum_{s_ij in S} [ L_ij + lambda_p * (Q_i + Q_j) ]
    L_ij = log(1 + exp(alpha <z_i, z_j>)) - alpha * s_ij * <z_i, z_j>      (alpha = 1 in the paper)
    Q_i  = sum_k log cosh(|z_ik| - 1)

L_ij is the negative log-likelihood of s_ij under p(s_ij = 1 | z) = sigmoid(<z_i, z_j>) (for ±1
codes <z_i, z_j> = K - 2 * Hamming distance); Q_i, the "pairwise quantisation loss", is the paper's
smooth surrogate of the L1 distance || |z_i| - 1 ||_1 (from a bimodal Laplacian prior), log cosh x
standing for |x|. log(1 + e^x) is computed as softplus(x) and log cosh x as
|x| + softplus(-2|x|) - log 2, both finite for saturated outputs.

In hashbench S is the set of in-batch pairs (the paper trains with mini-batch SGD on the pairs
of each batch). The batch loss is written as the authors' released Caffe layer normalises it
(``PairwiseLossLayer``, zhuhan1236/dhn-caffe, ``src/caffe/layers/pairwise_loss_layer.cu``):
the mean of L_ij over the pairs, plus lambda times the mean over the batch of Q_i. Per anchor:

    loss_i = (1 / |P_i|) * sum_{j in P_i} L_ij  +  lambda * Q_i

with P_i the anchor's partners (every j != i; with ``self_pairs=True`` also j = i, as the
released layer counts all B x B entries), averaged over the anchors (``reduction="sum"`` sums).
With S the B (B - 1) / 2 unordered pairs of the batch this is C * 2 / (B (B - 1)) when
lambda = 2 * lambda_p (the paper's sum counts the quantisation of both items of each pair, B - 1
times per item): the same objective up to a constant factor.

Constants and their sources:

- alpha = 1: the paper's sigmoid(<z_i, z_j>), and the released Caffe layer's (plain dot product).
- lambda = 0.3: the released ``models/nus_wide/train_val.prototxt`` (``q_gamma: 0.3``, weighing the
  layer's gradient of (1/B) sum_i Q_i against that of the pair mean), i.e. lambda_p = 0.15. The
  paper chooses lambda by cross-validation over 1e-5 ... 100 and gives no value.
- tanh relaxation: the paper's fch activation and the prototxt's ``tanh8`` layer.
- hash layer at 10x the backbone's learning rate (``lr_mult={"head.": 10}``): the paper ("fch is
  trained from scratch ... 10 times that of the lower layers"); the prototxt's lr_mult 10 (20 for
  its bias).
- s_ij = 1 when two items share at least one label (``binary``): the released layer's rule (label
  dot product > 0); it is how the paper treats multi-label NUS-WIDE.

Where paper and released code differ, hashbench follows the paper and the code is reachable:

- the released layer also counts the B self-pairs (i, i): ``self_pairs=True``;
- for <z_i, z_j> >= 15 it replaces log(1 + e^x) by x (``l_threshold: 15``); not reproduced: exact
  softplus differs from it by less than 3.1e-7 per pair.

Reimplementations differ from both. The authors' later TensorFlow release (thuml/DeepHash,
``DeepHash/model/dhn/dhn.py``) is another loss: ``normed_cross_entropy`` uses alpha = 10 on the
*cosine* of the codes, weighs similar pairs by (#pairs / #similar pairs) and squares the
quantisation term, (|z| - 1)^2, with ``q_lambda = 0`` in ``examples/dhn/train_val.sh``.
swuxyj/DeepHash-pytorch (``DHN.py``) drops the tanh, uses DPSH's 1/2 <u_i, U_j> against a bank of the
whole training set and weighs the mean log cosh by 0.1. Only alpha is reachable here
(``method.alpha=...``).

Defaults: alpha = 1, lambda = 0.3, binary similarity, no self-pairs, tanh relaxation, no bypass,
hash layer lr x10.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from hashbench.losses import HashLoss, not_self, reduce, unit_similarity
from hashbench.method import DeepMethod
from hashbench.params import Flag, Interval, Options
from hashbench.registry import LOSSES, METHODS

_LOG2 = math.log(2.0)


def log_cosh(x: torch.Tensor) -> torch.Tensor:
    """log cosh x, elementwise, computed as |x| + softplus(-2|x|) - log 2 (no overflow)."""
    a = x.abs()
    return a + F.softplus(-2.0 * a) - _LOG2


@LOSSES.register_module(name="dhn")
class DHNLoss(HashLoss):
    """DHN's pairwise cross-entropy on in-batch pairs plus lambda * the log-cosh quantisation loss.

    Parameters
    ----------
    alpha : float
        Scale of the inner product inside the sigmoid (the paper's: 1).
    lam : float
        lambda, weight of Q_i = sum_k log cosh(|z_ik| - 1) against the pair mean (released: 0.3).
    similarity : str
        How labels become s_ij; must give values in [0, 1] (``binary``, ``cosine``).
    self_pairs : bool
        Count each item with itself too (the released Caffe layer's B x B pairs).
    reduction : {"mean", "sum"}
        Over anchors of the batch.

    Called as every :class:`~hashbench.losses.HashLoss`; ``codes`` (B, K) are relaxed codes z in
    (-1, 1). Returns ``loss`` and the detached terms ``likelihood`` and ``quantization`` (reduced
    the same way, so ``loss = likelihood + lam * quantization``).
    """

    _parameter_constraints = {"alpha": [Interval(float, 0, None, closed="neither")],
                              "lam": [Interval(float, 0, None)], "self_pairs": [Flag()],
                              "reduction": [Options("mean", "sum")]}

    def __init__(self, *, alpha: float = 1.0, lam: float = 0.3, similarity: str = "binary",
                 self_pairs: bool = False, reduction: str = "mean"):
        super().__init__()
        self.alpha, self.lam, self.reduction = float(alpha), float(lam), reduction
        self.self_pairs = bool(self_pairs)
        self.similarity_name = similarity
        self.similarity = unit_similarity(similarity, "dhn")

    def forward(self, codes, labels, indices=None, tuples=None, ref=None) -> dict[str, torch.Tensor]:
        n = len(codes)
        s = self.similarity(labels, labels).to(codes.dtype)
        x = self.alpha * (codes @ codes.T)
        nll = F.softplus(x) - s * x
        if self.self_pairs:
            pairs = nll.mean(dim=1)
        else:
            others = not_self(n, torch.arange(n, device=codes.device))
            pairs = torch.where(others, nll, torch.zeros_like(nll)).sum(dim=1) / max(n - 1, 1)
        quant = log_cosh(codes.abs() - 1).sum(dim=1)
        likelihood, quantization = reduce(pairs, self.reduction), reduce(quant, self.reduction)
        return dict(loss=likelihood + self.lam * quantization, likelihood=likelihood.detach(),
                    quantization=quantization.detach())


@METHODS.register_module(name="dhn")
class DHN(DeepMethod):
    """Deep Hashing Network (AAAI 2016): pairwise cross-entropy on tanh codes + log-cosh quantisation."""

    family = "pairwise"

    def __init__(self, n_bits: int, *, alpha: float = 1.0, lam: float = 0.3, similarity: str = "binary",
                 self_pairs: bool = False, reduction: str = "mean", bypass: bool = False,
                 lr_mult: dict | None = None, head_lr_drop: float | None = None):
        super().__init__(
            n_bits, loss=dict(type="dhn", alpha=alpha, lam=lam, similarity=similarity, self_pairs=self_pairs,
                              reduction=reduction),
            relaxation="tanh", bypass=bypass, lr_mult={"head.": 10.0} if lr_mult is None else lr_mult,
            head_lr_drop=head_lr_drop)
