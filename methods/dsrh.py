"""DSRH — Deep Semantic Ranking Based Hashing (Zhao, Huang, Wang, Tan; CVPR 2015).

For an anchor q and images x_i, x_j with similarity levels r_i > r_j (r = number of shared labels):

    l(q, x_i, x_j) = w(r_i, r_j) * max(0, rho + d(q, x_i) - d(q, x_j))
    w(r_i, r_j)    = (2^r_i - 2^r_j) / Z_q
    d(q, x)        = (K - b(q)·b(x)) / 2,   b = 2 sigmoid(z) - 1

plus the mean-zero (bit balance) term alpha/2 * sum_k (mean over the batch of b_k)^2 and weight
decay in the optimiser.

hashbench's ``dsrh`` is the paper's loss on all in-batch triplets: every image is an anchor, and
every ordered pair of other batch images with r_i > r_j is a triplet — all of them, as one masked
(B, B, B) tensor computed in anchor chunks (:func:`hashbench.losses.weighted_ranking_hinge`: one
(chunk, B, B) buffer holds the hinge and then its gradient mask, so the triplets cost a few passes
over B^3 numbers). The batch loss is the mean over anchors (``reduction="sum"`` sums instead).
Two of its choices are hashbench's own generalisations, not the released code's:

- Z_q is the ideal DCG of *all* the anchor's other batch items, sum_p (2^r_(p) - 1) / ln(p + 1)
  over their relevances in decreasing order — the released code normalises by the two sampled
  partners' DCG (the paper allows a constant: ``normalize="none"``);
- the margin is rho = 5K/64 (2.5 at 32 bits): the release hard-codes rho = 5 and only ran 64 bits,
  and a fixed 5 leaves 16-bit codes no room to rank four levels (``margin=5`` restores it).

The authors' released code (``zhaofang0627/cuda-convnet-for-hashing``; ``shared/docs/dsrh.md``)
trains differently in several ways, each an option here (``configs/methods/dsrh_as_released.py``
turns them all on):

- ``sampler="released"``: its triplets — per anchor, partners drawn from the whole training set at
  chosen levels, rare labels' anchors repeated (:mod:`hashbench.methods.dsrh_sampler`; the loss
  takes them as explicit weighted tuples); an anchor whose rarest label has n_c images is repeated
  ``floor(balance_count / n_c) + 1`` times per epoch (3000 in the release). With it,
  ``self_pair=True`` lets the anchor count in its own relevance, as the release does, and
  ``rows=True`` makes the batches the release's: triplet rows in order, ``batch_size`` counting rows.
- ``balance="released"``: the balance term on each triplet row's anchor, scaled by the row's weight
  and divided by the number of rows (:func:`released_balance`) — about 1/N of ``alpha`` with the
  default ``balance="batch"``, which is roughly two orders of magnitude stronger than released.
- ``dropout=0.5`` on the final feature before the hash layer and ``head_init=dict(std=0.01, bias=1)``
  (N(0, 0.01²) weights, bias 1); the release's fc6/fc7 exactly with the ``torchvision`` backbones.
- learning rates: the default multipliers are the release's for the hash layer — ×10 (fc7 branch),
  ×2.5 (fc6 branch), ×20 (bias), dropping ×10 halfway through training — but the backbone's biases
  stay at ×1 with weight decay, where the release has ×2 and no decay on any bias (``lr_mult``).

The same loss with ``weighting="none"`` and ``similarity="binary"`` is the plain triplet ranking
loss of Lai et al. (CVPR 2015): the ``triplet`` baseline is a variant of this method, not new code.
DSRH's ablations are variants too, at the bottom of this file (``dsrh_nobypass``, ...).
"""
from __future__ import annotations

import torch

from hashbench.errors import HashbenchError
from hashbench.losses import (HashLoss, balance, not_self, ranked_pairs, reduce, relaxed_hamming,
                              weighted_ranking_hinge)
from hashbench.losses import similarity as label_similarity
from hashbench.method import DeepMethod, variant
from hashbench.params import Flag, Interval, Options
from hashbench.registry import LOSSES, METHODS

WEIGHTINGS = ("ndcg", "none")
SAMPLERS = ("in_batch", "released")
NORMALIZATIONS = ("idcg", "none")
BALANCES = ("batch", "released")


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


def released_balance(anchor_codes: torch.Tensor, weights: torch.Tensor, alpha: float
                     ) -> tuple[torch.Tensor, torch.Tensor]:
    """The released code's balance term on N triplet rows: ``(term, E)``.

    ``anchor_codes`` (N, K) are the rows' anchor codes, ``weights`` (N,) their triplet weights,
    E = 1/2 sum_k m_k^2 with m the mean of the N anchor codes. The released code has the term only
    as a gradient (``kLocRankGrad``): row r's anchor gets ``alpha * w_r * dE/db_r``, and, like every
    gradient in cuda-convnet, the total is divided by N. ``term``'s gradient is exactly that
    (``alpha / N * w_r * m_k / N`` on b_rk); its value is ``alpha * mean(w) / N * E``, the loss
    whose gradient it is when the weights are equal.
    """
    n = anchor_codes.shape[0]
    m = anchor_codes.mean(dim=0)
    e = 0.5 * m.pow(2).sum()
    surrogate = (weights[:, None] * anchor_codes * m.detach()).sum() * (alpha / n ** 2)
    value = alpha * weights.mean() / n * e
    return value.detach() + surrogate - surrogate.detach(), e


@LOSSES.register_module(name="dsrh")
class DSRHLoss(HashLoss):
    """DSRH's weighted triplet ranking loss on all in-batch triplets (or on given weighted tuples),
    plus the bit-balance term.

    Parameters
    ----------
    margin : float
        rho, in Hamming units.
    alpha : float
        Weight of the mean-zero (bit balance) term.
    balance : {"batch", "released"}
        ``batch``: alpha/2 * sum_k (mean over the batch's anchors of b_k)^2 added to the reduced
        ranking loss. ``released``: the released code's scaling (:func:`released_balance`) on the
        triplet rows of explicit tuples — per row, by its weight, divided by the number of rows,
        about 1/N of ``batch``'s strength; needs tuples (the released sampler).
    weighting : {"ndcg", "none"}
        ``ndcg``: w = (2^r_i - 2^r_j) / Z; ``none``: w = 1 (plain triplet ranking loss).
    normalize : {"idcg", "none"}
        Z_q: the ideal DCG of the anchor's other batch items (hashbench's in-batch form of the released
        code's two-partner DCG) or 1 (the paper's "may be omitted").
    similarity : str
        How labels become the level r: ``graded`` (shared-label count), ``binary``, ``cosine``.
    reduction : {"mean", "sum"}
        Over anchors of the batch.
    chunk : int
        Anchors per chunk of the (chunk, B, B) triplet tensor (bounds memory for large batches).

    Takes ``tuples`` (explicit weighted triplets, see :meth:`forward`).
    """

    takes = frozenset({"tuples"})
    _parameter_constraints = {
        "margin": [Interval(float, 0, None)], "alpha": [Interval(float, 0, None)],
        "balance": [Options(*BALANCES)],
        "weighting": [Options(*WEIGHTINGS)], "normalize": [Options(*NORMALIZATIONS)],
        "reduction": [Options("mean", "sum")], "chunk": [Interval(int, 1, None)],
    }

    def __init__(self, *, margin: float = 5.0, alpha: float = 1.0, balance: str = "batch", weighting: str = "ndcg",
                 normalize: str = "idcg", similarity: str = "graded", reduction: str = "mean",
                 chunk: int = 256):
        super().__init__()
        if weighting not in WEIGHTINGS:
            raise HashbenchError(f"unknown weighting {weighting!r}; valid: {', '.join(WEIGHTINGS)}")
        if normalize not in NORMALIZATIONS:
            raise HashbenchError(f"unknown normalize {normalize!r}; valid: {', '.join(NORMALIZATIONS)}")
        if balance not in BALANCES:
            raise HashbenchError(f"unknown balance {balance!r}; valid: {', '.join(BALANCES)}")
        self.margin, self.alpha, self.balance = float(margin), float(alpha), balance
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

    def tuple_terms(self, codes: torch.Tensor, tuples) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """On explicit tuples (a, i, j) with weights w: per-anchor sums of w * hinge (one entry per
        anchor row), the anchor rows, and the number of tuples of weight > 0 with a positive hinge."""
        a, i, j = tuples.index.unbind(1)
        k = codes.shape[1]
        d_ai = 0.5 * (k - (codes[a] * codes[i]).sum(-1))
        d_aj = 0.5 * (k - (codes[a] * codes[j]).sum(-1))
        hinge = torch.relu(self.margin + d_ai - d_aj)
        w = tuples.weight.to(codes.dtype)
        anchors = torch.unique(a)
        per_anchor = codes.new_zeros(len(codes)).index_add_(0, a, w * hinge)[anchors]
        return per_anchor, anchors, ((hinge > 0) & (w > 0)).sum()

    def forward(self, codes: torch.Tensor, labels: torch.Tensor, indices=None, tuples=None, ref=None
                ) -> dict[str, torch.Tensor]:
        """All in-batch triplets; with ``tuples`` (the released sampler's) only those, weighted as
        given, and the balance term on the anchors' codes (``balance="released"``: on the anchor
        of each tuple of weight > 0, scaled as in the released code)."""
        if tuples is None:
            if self.balance == "released":
                raise HashbenchError("DSRH's balance='released' scales the balance term per triplet row and needs "
                                     "the released sampler's tuples (sampler='released'); use balance='batch'")
            per_anchor, active = self.triplet_terms(codes, labels)
            anchor_codes = codes
        else:
            per_anchor, anchors, active = self.tuple_terms(codes, tuples)
            anchor_codes = codes[anchors]
        triplet = reduce(per_anchor, self.reduction)
        if self.balance == "released":
            rows = tuples.weight > 0
            term, bal = released_balance(codes[tuples.index[rows, 0]], tuples.weight[rows].to(codes.dtype),
                                         self.alpha)
        else:
            bal = balance(anchor_codes)
            term = self.alpha * bal
        return dict(loss=triplet + term, triplet=triplet.detach(), balance=bal.detach(), active=active.detach())


def released_lr_mult(bypass: bool) -> dict[str, float]:
    """The released code's hash-layer multipliers: fc7 branch x10, fc6 branch x2.5, bias x20."""
    mult = {"head.final.weight": 10.0, "head.final.bias": 20.0}
    return {**mult, "head.lower": 2.5} if bypass else mult


@METHODS.register_module(name="dsrh")
class DSRH(DeepMethod):
    """Deep Semantic Ranking Hashing (CVPR 2015): NDCG-weighted triplet ranking on graded relevance."""

    family = "triplet"
    _parameter_constraints = {
        "margin": [Interval(float, 0, None), None], "alpha": [Interval(float, 0, None)],
        "weighting": [Options(*WEIGHTINGS)], "normalize": [Options(*NORMALIZATIONS)],
        "reduction": [Options("mean", "sum")], "sampler": [Options(*SAMPLERS)],
        "balance_count": [Interval(int, 1, None)], "balance": [Options(*BALANCES)],
        "self_pair": [Flag()], "rows": [Flag()],
    }

    def __init__(self, n_bits: int, *, margin: float | None = None, alpha: float = 1.0, balance: str = "batch",
                 weighting: str = "ndcg", normalize: str = "idcg", similarity: str = "graded",
                 reduction: str = "mean", relaxation: str = "sigmoid", bypass: bool = True,
                 lr_mult: dict | None = None, head_lr_drop: float | None = 0.5, sampler: str = "in_batch",
                 balance_count: int = 3000, self_pair: bool = False, rows: bool = False, dropout: float = 0.0,
                 head_init: dict | None = None):
        if sampler not in SAMPLERS:
            raise HashbenchError(f"unknown sampler {sampler!r}; valid: {', '.join(SAMPLERS)}")
        if isinstance(balance_count, bool) or not isinstance(balance_count, int) or balance_count < 1:
            raise HashbenchError(f"balance_count must be an integer >= 1; got {balance_count!r}")
        needs_released = [k for k, on in (("balance='released'", balance == "released"),
                                          ("self_pair", self_pair), ("rows", rows)) if on]
        if needs_released and sampler != "released":
            raise HashbenchError(f"dsrh: {needs_released[0]} belongs to the released code's triplets; it needs "
                                 "sampler='released' (in-batch triplets have no rows)")
        super().__init__(
            n_bits,
            loss=dict(type="dsrh", margin=5.0 * n_bits / 64 if margin is None else margin, alpha=alpha,
                      balance=balance, weighting=weighting, normalize=normalize, similarity=similarity,
                      reduction=reduction),
            relaxation=relaxation, bypass=bypass,
            lr_mult=released_lr_mult(bypass) if lr_mult is None else lr_mult, head_lr_drop=head_lr_drop,
            dropout=dropout, head_init=head_init)
        self.sampler, self.balance_count = sampler, balance_count
        self.self_pair, self.rows = bool(self_pair), bool(rows)

    def batches(self, split, *, seed: int):
        """All in-batch triplets of shuffled images, or (``sampler="released"``) the released code's."""
        if self.sampler == "released":
            from hashbench.methods.dsrh_sampler import ReleasedTriplets

            return ReleasedTriplets(split, seed=seed, balance_count=self.balance_count, self_pair=self.self_pair,
                                    rows=self.rows)
        return super().batches(split, seed=seed)


# ---------------------------------------------------------------------------------- ablations
@METHODS.register_module(name="dsrh_nobypass")
@variant(DSRH, bypass=False)
def dsrh_nobypass():
    """DSRH ablation: no bypass connection, the hash layer reads the final feature only."""


@METHODS.register_module(name="dsrh_unweighted")
@variant(DSRH, weighting="none")
def dsrh_unweighted():
    """DSRH ablation: w = 1, a plain triplet ranking loss on graded relevance."""


@METHODS.register_module(name="dsrh_binary")
@variant(DSRH, similarity="binary")
def dsrh_binary():
    """DSRH ablation: binary relevance (r clipped to {0, 1}), NDCG weights kept."""


@METHODS.register_module(name="dsrh_nobalance")
@variant(DSRH, alpha=0.0)
def dsrh_nobalance():
    """DSRH ablation: no mean-zero (bit balance) term, alpha = 0."""


@METHODS.register_module(name="dsrh_tanh")
@variant(DSRH, relaxation="tanh")
def dsrh_tanh():
    """DSRH ablation: tanh relaxation b = tanh(z) instead of 2 sigmoid(z) - 1."""


@METHODS.register_module(name="dsrh_released")
@variant(DSRH, sampler="released")
def dsrh_released():
    """DSRH on the released code's triplets: partners drawn from the whole training set per anchor."""
