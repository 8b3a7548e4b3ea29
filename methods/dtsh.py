"""DTSH — Deep Supervised Hashing with Triplet Labels (Xiaofang Wang, Yi Shi, Kris M. Kitani;
ACCV 2016, arXiv 1612.03900).

The network's hash layer outputs real values u (no squashing); the binary code is b = sign(u). For a
triplet (q, i, j) — image i similar to the query q, image j dissimilar — the likelihood of the triplet
label is sigmoid(theta_qi - theta_qj - alpha), and the loss is

    L = - sum_{(q,i,j)} log sigmoid(theta_qi - theta_qj - alpha)  +  lambda * sum_n ||b_n - u_n||^2
      =   sum_{(q,i,j)} log(1 + exp(-(theta_qi - theta_qj - alpha)))  +  lambda * sum_n ||b_n - u_n||^2
    theta_ij = 1/2 * u_i . u_j

For ±1 codes theta_qi - theta_qj = Hamming(q, j) - Hamming(q, i), so the margin alpha asks the
dissimilar image to be alpha bits further than the similar one. The paper argues for a margin that
grows with the code length; hashbench uses alpha = K/2 (half the code length). The log-sigmoid is
computed as softplus(-x), finite for saturated outputs.

In hashbench the triplets are those of the mini-batch, formed by the shared
:func:`hashbench.losses.ranked_pairs`: every image is an anchor q, and every ordered pair (i, j) of
other images with r(q, i) > r(q, j). With the default ``binary`` similarity these are exactly the
(similar, dissimilar) pairs of the paper; ``graded`` makes every ordered relevance level a triplet.
The loss of anchor q is the sum over its triplets plus lambda ||b_q - u_q||^2, so the sum over
anchors is the paper's objective on the batch; the batch loss is the mean over anchors.

Defaults: alpha = K/2, lambda = 1, identity relaxation (linear hash layer), no bypass, one learning
rate for all layers.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from hashbench.losses import HashLoss, quantization_error, ranked_pairs, reduce, similarity as similarity_fn
from hashbench.method import DeepMethod
from hashbench.registry import LOSSES, METHODS


@LOSSES.register_module(name="dtsh")
class DTSHLoss(HashLoss):
    """DTSH's triplet negative log-likelihood on all in-batch triplets, plus lambda * quantisation error.

    Parameters
    ----------
    margin : float or None
        alpha, in Hamming units; None: K/2.
    lam : float
        lambda, the weight of the quantisation term ||b - u||^2.
    similarity : str
        How labels become the relevance r that orders triplets (``binary``, ``graded``, ``cosine``).
    reduction : {"mean", "sum"}
        Over anchors of the batch.
    chunk : int
        Anchors per chunk of the (chunk, B, B) triplet tensor.

    Called as every :class:`~hashbench.losses.HashLoss`; ``codes`` (B, K) are real outputs u.
    Returns ``loss``, the detached terms ``triplet`` and ``quantization`` (reduced the same way, so
    ``loss = triplet + lam * quantization``) and ``triplets``, the number of triplets in the batch.
    """

    def __init__(self, *, margin: float | None = None, lam: float = 1.0, similarity: str = "binary",
                 reduction: str = "mean", chunk: int = 256):
        super().__init__()
        self.margin = None if margin is None else float(margin)
        self.lam, self.reduction, self.chunk = float(lam), reduction, int(chunk)
        self.similarity_name = similarity
        self.similarity = similarity_fn(similarity)

    def forward(self, codes: torch.Tensor, labels: torch.Tensor, indices=None, tuples=None, ref=None
                ) -> dict[str, torch.Tensor]:
        n, k = codes.shape
        margin = k / 2.0 if self.margin is None else self.margin
        rel = self.similarity(labels, labels).to(codes.dtype)
        theta = 0.5 * codes @ codes.T
        per_anchor, count = [], codes.new_zeros(())
        for start in range(0, n, self.chunk):
            anchors = torch.arange(start, min(start + self.chunk, n), device=codes.device)
            mask = ranked_pairs(rel[anchors], anchors)
            t = theta[anchors]
            nll = F.softplus(-(t[:, :, None] - t[:, None, :] - margin))
            per_anchor.append(torch.where(mask, nll, torch.zeros_like(nll)).sum(dim=(1, 2)))
            count = count + mask.sum()
        triplet = reduce(torch.cat(per_anchor), self.reduction)
        quantization = reduce(quantization_error(codes), self.reduction)
        return dict(loss=triplet + self.lam * quantization, triplet=triplet.detach(),
                    quantization=quantization.detach(), triplets=count.detach())


@METHODS.register_module(name="dtsh")
class DTSH(DeepMethod):
    """Deep Supervised Hashing with Triplet Labels (ACCV 2016): triplet likelihood, margin K/2, linear codes."""

    family = "triplet"

    def __init__(self, n_bits: int, *, margin: float | None = None, lam: float = 1.0, similarity: str = "binary",
                 reduction: str = "mean", relaxation: str = "identity", bypass: bool = False,
                 lr_mult: dict | None = None, head_lr_drop: float | None = None):
        super().__init__(
            n_bits, loss=dict(type="dtsh", margin=n_bits / 2.0 if margin is None else margin, lam=lam,
                                    similarity=similarity, reduction=reduction),
            relaxation=relaxation, bypass=bypass, lr_mult=lr_mult, head_lr_drop=head_lr_drop)
