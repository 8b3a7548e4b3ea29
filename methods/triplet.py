"""Triplet ranking hashing — the plain triplet baseline (Hanjiang Lai, Yan Pan, Ye Liu, Shuicheng Yan;
CVPR 2015, "Simultaneous Feature Learning and Hash Coding with Deep Neural Networks").

For an anchor q, an image x+ similar to q and an image x- dissimilar to q (binary relevance:
sharing at least one label), the margin triplet ranking loss on relaxed codes is

    l(q, x+, x-) = max(0, rho + d(q, x+) - d(q, x-)),    d(q, x) = (K - b(q) . b(x)) / 2

This is DSRH's loss with every weight w = 1 and relevance clipped to {0, 1}, so it is not new code:
the method builds :class:`hashbench.methods.dsrh.DSRHLoss` with ``weighting="none"`` and
``similarity="binary"``. Everything else is DSRH's, so that this row differs from ``dsrh`` only in
the ranking weights and graded relevance: the margin rule rho = 5K/64, the bit-balance term
(alpha = 1), in-batch triplets (all (q, i, j) with r_i > r_j), sigmoid relaxation, the bypass
connection and DSRH's learning-rate multipliers and hash-layer drop. Lai et al.'s own network (its
divide-and-encode module and margin 1 on squared distances of [0, 1] codes) is not reproduced.
"""
from __future__ import annotations

from hashbench.registry import METHODS
from hashbench.methods.dsrh import DSRH


@METHODS.register_module(name="triplet")
class Triplet(DSRH):
    """Triplet ranking hashing (Lai et al., CVPR 2015): DSRH's loss with w = 1 and binary relevance."""

    def __init__(self, n_bits: int, *, margin: float | None = None, alpha: float = 1.0, similarity: str = "binary",
                 reduction: str = "mean", relaxation: str = "sigmoid", bypass: bool = True,
                 lr_mult: dict | None = None, head_lr_drop: float | None = 0.5):
        super().__init__(n_bits, margin=margin, alpha=alpha, weighting="none", similarity=similarity,
                         reduction=reduction, relaxation=relaxation, bypass=bypass, lr_mult=lr_mult,
                         head_lr_drop=head_lr_drop)
