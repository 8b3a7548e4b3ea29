"""IDHN — Improved Deep Hashing with Soft Pairwise Similarity for Multi-label Image Retrieval (Zheng
Zhang, Qin Zou, Yuewei Lin, Long Chen, Song Wang; IEEE Transactions on Multimedia 2019, arXiv
1803.02987; its first arXiv version was titled "Instance Similarity Deep Hashing for Multi-Label
Image Retrieval").

The similarity of two images is the cosine of their multi-hot label vectors,

    s_ij = <y_i, y_j> / (|y_i| |y_j|)   in [0, 1]

(the shared ``cosine`` similarity). A pair is *hard* when s_ij is 0 or 1 (no shared label, or the
same label set) and *soft* otherwise. Codes are h = softsign(z) = z / (1 + |z|). Hard pairs get the
pairwise cross-entropy on the scaled inner product, soft pairs the squared error between the codes'
normalised similarity and s_ij, and every code is pulled towards ±1:

    theta_ij = beta / K * <h_i, h_j>
    hard:  l_ij = log(1 + exp(theta_ij)) - s_ij * theta_ij
    soft:  l_ij = gamma * K * ( (<h_i, h_j> + K) / (2K) - s_ij )^2
    L = mean_{i, j} l_ij  +  alpha * mean_{i, k} | |h_ik| - 1 |

(<h_i, h_j> + K) / (2K) = 1 - Hamming / K for ±1 codes: the fraction of agreeing bits.
log(1 + exp(theta)) is computed as softplus(theta).

In hashbench the loss of anchor i is ``mean_j l_ij + alpha * mean_k | |h_ik| - 1 |`` and the batch
loss the mean over anchors, which is L above (``reduction="sum"`` sums over anchors). The pairs are
those of the mini-batch. The authors' code averages l over all B x B entries, the pair of an image
with itself included (a hard pair, s_ii = 1); ``self_pairs=False`` averages over j != i instead.

Which loss is which: the cross-entropy is for hard similarity and the mean-square error for soft
similarity, as in the paper's abstract and the authors' code (the DeepHash-pytorch
re-implementations named IDHN and ISDH have them under each other's names, issue #25 there).

Constants, all from the authors' TensorFlow release (pectinid16/IDHN, ``train.py``; the paper
tunes them by cross-validation):

- beta = 5 (``--belta``): the inner product is scaled by beta / K inside the cross-entropy;
- gamma = 0.1 (``--gama``): the weight of the soft pairs' squared error, which the code multiplies
  by K;
- alpha = 0.1 (``--alpha``): the weight of the regulariser | |h| - 1 |;
- hard / soft: s < 0.01 or s > 0.99 is hard (the code's tolerances on the float label cosine);
- softsign activation on the hash layer (``model.softsign``), no bypass.

Learning rates: the release fine-tunes a pretrained AlexNet and trains the new hash layer (fc8) at
100x the rate of the pretrained layers (``AdamOptimizer(learning_rate * 0.01)`` for the rest).
hashbench trains its backbone from scratch, so by default every layer has the same rate;
``method.lr_mult='{"head.": 100}'`` gives the release's ratio.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from hashbench.errors import HashbenchError
from hashbench.losses import HashLoss, not_self, reduce, similarity
from hashbench.method import DeepMethod
from hashbench.params import Flag, Interval, Options
from hashbench.registry import LOSSES, METHODS

HARD_LOW, HARD_HIGH = 0.01, 0.99  # released code: hard where s < 0.01 or s > 0.99
RELAXATIONS = ("softsign",) + DeepMethod.RELAXATIONS

_CONSTRAINTS = {
    "beta": [Interval(float, 0, None, closed="neither")],
    "gamma": [Interval(float, 0, None)],
    "alpha": [Interval(float, 0, None)],
    "self_pairs": [Flag()],
    "reduction": [Options("mean", "sum")],
}


@LOSSES.register_module(name="idhn")
class IDHNLoss(HashLoss):
    """IDHN's loss: cross-entropy on hard pairs, squared error on soft pairs, L1 pull towards ±1.

    Parameters
    ----------
    beta : float
        The inner product is scaled by beta / K inside the cross-entropy.
    gamma : float
        Weight of the soft pairs' squared error (times K, as in the authors' code).
    alpha : float
        Weight of the regulariser mean_k | |h_k| - 1 |.
    self_pairs : bool
        Whether each image's pair with itself counts (the authors' code: yes).
    reduction : {"mean", "sum"}
        Over anchors of the batch.

    ``codes`` (B, K) are relaxed codes h in (-1, 1). Returns ``loss`` and the detached terms
    ``cross_entropy`` (hard pairs), ``mse`` (soft pairs, before gamma) and ``regularizer``, reduced
    the same way: ``loss = cross_entropy + gamma * mse + alpha * regularizer``.
    """

    _parameter_constraints = dict(_CONSTRAINTS)

    def __init__(self, *, beta: float = 5.0, gamma: float = 0.1, alpha: float = 0.1, self_pairs: bool = True,
                 reduction: str = "mean"):
        super().__init__()
        self.beta, self.gamma, self.alpha = float(beta), float(gamma), float(alpha)
        self.self_pairs, self.reduction = bool(self_pairs), reduction
        self.similarity = similarity("cosine")

    def forward(self, codes: torch.Tensor, labels: torch.Tensor, indices=None, tuples=None, ref=None
                ) -> dict[str, torch.Tensor]:
        n, k = codes.shape
        s = self.similarity(labels, labels).to(codes.dtype)
        hard = (s < HARD_LOW) | (s > HARD_HIGH)
        if self.self_pairs:
            partners = torch.ones(n, n, dtype=torch.bool, device=codes.device)
        else:
            partners = not_self(n, torch.arange(n, device=codes.device))
        count = partners.sum(dim=1).clamp_min(1).to(codes.dtype)
        ip = codes @ codes.T
        theta = (self.beta / k) * ip
        ce = F.softplus(theta) - s * theta
        mse = k * ((ip + k) / (2 * k) - s).pow(2)
        zero = torch.zeros_like(ip)
        ce_i = torch.where(hard & partners, ce, zero).sum(dim=1) / count
        mse_i = torch.where(~hard & partners, mse, zero).sum(dim=1) / count
        reg_i = (codes.abs() - 1).abs().mean(dim=1)
        cross_entropy, soft, regularizer = (reduce(t, self.reduction) for t in (ce_i, mse_i, reg_i))
        return dict(loss=cross_entropy + self.gamma * soft + self.alpha * regularizer,
                    cross_entropy=cross_entropy.detach(), mse=soft.detach(), regularizer=regularizer.detach())


@METHODS.register_module(name="idhn")
class IDHN(DeepMethod):
    """Improved Deep Hashing (TMM 2019): cross-entropy on hard pairs, squared error on soft label-cosine pairs."""

    family = "pairwise"
    _parameter_constraints = dict(_CONSTRAINTS, relaxation=[Options(*RELAXATIONS)])

    def __init__(self, n_bits: int, *, beta: float = 5.0, gamma: float = 0.1, alpha: float = 0.1,
                 self_pairs: bool = True, reduction: str = "mean", relaxation: str = "softsign",
                 bypass: bool = False, lr_mult: dict | None = None, head_lr_drop: float | None = None):
        if relaxation not in RELAXATIONS:
            raise HashbenchError(f"idhn: unknown relaxation {relaxation!r}; valid: {', '.join(RELAXATIONS)}")
        super().__init__(
            n_bits, loss=dict(type="idhn", beta=beta, gamma=gamma, alpha=alpha, self_pairs=self_pairs,
                              reduction=reduction),
            relaxation="identity" if relaxation == "softsign" else relaxation, bypass=bypass, lr_mult=lr_mult,
            head_lr_drop=head_lr_drop)
        self.relaxation = relaxation

    def relax(self, z: torch.Tensor, progress: float) -> torch.Tensor:
        """h = softsign(z) = z / (1 + |z|) (the authors' code), or one of the shared relaxations."""
        if self.relaxation == "softsign":
            return F.softsign(z)
        return super().relax(z, progress)
