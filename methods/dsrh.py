"""DSRH — Deep Semantic Ranking Based Hashing (Zhao, Huang, Wang, Tan; CVPR 2015).

For an anchor q and images x_i, x_j with similarity levels r_i > r_j (r = number of shared labels):

    l(q, x_i, x_j) = w(r_i, r_j) * max(0, rho + d(q, x_i) - d(q, x_j))
    w(r_i, r_j)    = (2^r_i - 2^r_j) / Z_q
    d(q, x)        = (K - b(q)·b(x)) / 2,   b = 2 sigmoid(z) - 1

plus the mean-zero (bit balance) term alpha/2 * sum_k (mean over the batch of b_k)^2 and weight
decay in the optimiser. Z_q is the ideal DCG of the anchor's positives with natural-log discounts,
sum_p (2^r_(p) - 1) / ln(p + 1), as in the authors' released code (the paper allows a constant).

Triplets are formed in the mini-batch: every image is an anchor, and every ordered pair of other
batch images with r_i > r_j is a triplet — all of them, as one masked (B, B, B) tensor computed in
anchor chunks (:func:`hashbench.losses.weighted_ranking_hinge`: one (chunk, B, B) buffer holds the
hinge and then its gradient mask, so the triplets cost a few passes over B^3 numbers). The batch
loss is the mean over anchors (``reduction="sum"`` sums instead).

``sampler="released"`` trains on the released code's triplets instead: per anchor, partners drawn
from the whole training set at chosen levels, rare labels' anchors repeated
(:class:`hashbench.samplers.ReleasedTripletSampler`, :meth:`DSRHLoss.sampled`); ``batch_size`` then
counts anchors (four images each). An anchor whose rarest label has n_c images is repeated
``floor(balance_count / n_c) + 1`` times per epoch (``balance_count`` = 3000 in the released code).

The same loss with ``weighting="none"`` and ``similarity="binary"`` is the plain triplet ranking
loss of Lai et al. (CVPR 2015): the ``triplet`` baseline is a config of this loss, not new code.

Defaults are the paper's / released code's values: margin rho = 5 at K = 64 bits (the released code's
only setting; hashbench keeps that ratio, rho = 5K/64, so 2.5 at 32 bits — a fixed rho = 5 leaves
16-bit codes no room to rank four levels; ``margin=5`` restores the constant), balance
weight alpha = 1, sigmoid relaxation, bypass connection, weight decay 5e-4 (in the schedule),
learning-rate multipliers hash-layer 10x (fc7 branch), 2.5x (fc6 branch), 20x (bias), and the hash
layer's rates dropping x10 halfway through training.
"""
from __future__ import annotations

import torch
from torch import nn

from hashbench.errors import HashbenchError
from hashbench.losses import balance, not_self, ranked_pairs, reduce, relaxed_hamming, weighted_ranking_hinge
from hashbench.losses import similarity as label_similarity
from hashbench.method import DeepMethod
from hashbench.registry import LOSSES, METHODS
from hashbench.samplers import TRIPLETS

WEIGHTINGS = ("ndcg", "none")
SAMPLERS = ("in_batch", "released")
NORMALIZATIONS = ("idcg", "none")


def ndcg_weights(rel: torch.Tensor, anchors: torch.Tensor | None = None,
                 normalize: str = "idcg") -> torch.Tensor:
    """w[q, i, j] = (2^rel[q,i] - 2^rel[q,j]) / Z_q for anchors q; shape (A, B, B).

    ``rel`` (A, B) and ``anchors`` as in :func:`hashbench.losses.ranked_pairs`. ``Z_q`` is the ideal
    DCG of q's other batch items, sum_p (2^r_(p) - 1) / ln(p + 1) over their relevances in
    decreasing order (``normalize="idcg"``), or 1 (``"none"``).
    """
    gain = torch.pow(2.0, rel)
    w = gain[:, :, None] - gain[:, None, :]
    if normalize == "none":
        return w
    if anchors is None:
        anchors = torch.arange(rel.shape[0], device=rel.device)
    others = rel.masked_fill(~not_self(rel.shape[1], anchors), 0)
    ordered = others.sort(dim=1, descending=True).values
    discounts = torch.log(torch.arange(2, rel.shape[1] + 2, device=rel.device, dtype=rel.dtype))
    z = ((torch.pow(2.0, ordered) - 1) / discounts).sum(dim=1)
    return w.div_(z.clamp_min(1e-12)[:, None, None])


@LOSSES.register_module(name="dsrh")
class DSRHLoss(nn.Module):
    """DSRH's weighted triplet ranking loss on all in-batch triplets, plus the bit-balance term.

    Parameters
    ----------
    margin : float
        rho, in Hamming units.
    alpha : float
        Weight of the mean-zero (bit balance) term.
    weighting : {"ndcg", "none"}
        ``ndcg``: w = (2^r_i - 2^r_j) / Z; ``none``: w = 1 (plain triplet ranking loss).
    normalize : {"idcg", "none"}
        Z_q: the anchor's ideal DCG (released code) or 1 (the paper's "may be omitted").
    similarity : str
        How labels become the level r: ``graded`` (shared-label count), ``binary``, ``cosine``.
    reduction : {"mean", "sum"}
        Over anchors of the batch.
    chunk : int
        Anchors per chunk of the (chunk, B, B) triplet tensor (bounds memory for large batches).
    """

    def __init__(self, *, margin: float = 5.0, alpha: float = 1.0, weighting: str = "ndcg",
                 normalize: str = "idcg", similarity: str = "graded", reduction: str = "mean",
                 chunk: int = 256):
        super().__init__()
        if weighting not in WEIGHTINGS:
            raise HashbenchError(f"unknown weighting {weighting!r}; valid: {', '.join(WEIGHTINGS)}")
        if normalize not in NORMALIZATIONS:
            raise HashbenchError(f"unknown normalize {normalize!r}; valid: {', '.join(NORMALIZATIONS)}")
        self.margin, self.alpha = float(margin), float(alpha)
        self.weighting, self.normalize, self.reduction = weighting, normalize, reduction
        self.similarity_name = similarity
        self.similarity = label_similarity(similarity)
        self.chunk = chunk

    def triplet_terms(self, codes: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-anchor triplet loss (B,) and the number of triplets with a positive hinge."""
        rel = self.similarity(labels, labels).to(codes.dtype)
        dist = relaxed_hamming(codes, codes)
        per_anchor, active = [], codes.new_zeros((), dtype=torch.long)
        for s in range(0, len(codes), self.chunk):
            anchors = torch.arange(s, min(s + self.chunk, len(codes)), device=codes.device)
            r = rel[anchors]
            with torch.no_grad():  # the weights are constants of the labels
                mask = ranked_pairs(r, anchors)
                if self.weighting == "ndcg":
                    w = ndcg_weights(r, anchors, self.normalize).masked_fill_(~mask, 0)
                else:
                    w = mask.to(codes.dtype)
            loss, n = weighted_ranking_hinge(dist[anchors], w, self.margin, mask)
            per_anchor.append(loss)
            active = active + n
        return torch.cat(per_anchor), active

    def sampled(self, codes: torch.Tensor, weights: torch.Tensor) -> dict[str, torch.Tensor]:
        """The loss on explicit triplets of the released-code sampler (:mod:`hashbench.samplers`).

        ``codes`` (B, 4, K): slots (q, x_a, x_b, x-) of each anchor; ``weights`` (B, 3): w of the
        triplets ``TRIPLETS`` over those slots (0 where a triplet does not exist). The balance term
        is on the anchors' codes, as in the released code.
        """
        q = codes[:, 0]
        dist = 0.5 * (codes.shape[2] - (q[:, None, :] * codes[:, 1:]).sum(-1))  # d(q, slot 1..3): (B, 3)
        near = torch.tensor([i - 1 for _, i, _ in TRIPLETS], device=codes.device)
        far = torch.tensor([j - 1 for _, _, j in TRIPLETS], device=codes.device)
        hinge = torch.relu(self.margin + dist[:, near] - dist[:, far])
        triplet = reduce((weights * hinge).sum(1), self.reduction)
        bal = balance(q)
        return dict(loss=triplet + self.alpha * bal, triplet=triplet.detach(), balance=bal.detach(),
                    active=((hinge > 0) & (weights > 0)).sum().detach())

    def forward(self, codes: torch.Tensor, labels: torch.Tensor) -> dict[str, torch.Tensor]:
        per_anchor, active = self.triplet_terms(codes, labels)
        triplet = reduce(per_anchor, self.reduction)
        bal = balance(codes)
        return dict(loss=triplet + self.alpha * bal, triplet=triplet.detach(), balance=bal.detach(),
                    active=active.detach())


@METHODS.register_module(name="dsrh")
class DSRH(DeepMethod):
    """Deep Semantic Ranking Hashing (CVPR 2015): NDCG-weighted triplet ranking on graded relevance."""

    def __init__(self, n_bits: int, *, margin: float | None = None, alpha: float = 1.0, weighting: str = "ndcg",
                 normalize: str = "idcg", similarity: str = "graded", reduction: str = "mean",
                 relaxation: str = "sigmoid", bypass: bool = True, lr_mult: dict | None = None,
                 head_lr_drop: float | None = 0.5, sampler: str = "in_batch", balance_count: int = 3000):
        if sampler not in SAMPLERS:
            raise HashbenchError(f"unknown sampler {sampler!r}; valid: {', '.join(SAMPLERS)}")
        if isinstance(balance_count, bool) or not isinstance(balance_count, int) or balance_count < 1:
            raise HashbenchError(f"balance_count must be an integer >= 1; got {balance_count!r}")
        self.sampler, self.balance_count = sampler, balance_count
        super().__init__(
            n_bits,
            loss=DSRHLoss(margin=5.0 * n_bits / 64 if margin is None else margin, alpha=alpha,
                          weighting=weighting, normalize=normalize, similarity=similarity, reduction=reduction),
            relaxation=relaxation, bypass=bypass,
            lr_mult=lr_mult or dict(backbone=1.0, head=10.0, head_lower=2.5, head_bias=20.0),
            head_lr_drop=head_lr_drop)
