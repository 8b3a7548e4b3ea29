"""Triplet ranking hashing — the plain triplet baseline (Hanjiang Lai, Yan Pan, Ye Liu, Shuicheng Yan;
CVPR 2015, "Simultaneous Feature Learning and Hash Coding with Deep Neural Networks").

For an anchor q, an image x+ similar to q and an image x- dissimilar to q (binary relevance:
sharing at least one label), the margin triplet ranking loss on relaxed codes is

    l(q, x+, x-) = max(0, rho + d(q, x+) - d(q, x-)),    d(q, x) = (K - b(q) . b(x)) / 2

This is DSRH's loss with every weight w = 1 and relevance clipped to {0, 1}, so it is not new code:
``triplet`` is a variant of :class:`hashbench.methods.dsrh.DSRH` with ``weighting="none"`` and
``similarity="binary"``. Everything else is DSRH's, so that this row differs from ``dsrh`` only in
the ranking weights and graded relevance: the margin rule rho = 5K/64, the bit-balance term
(alpha = 1), in-batch triplets (all (q, i, j) with r_i > r_j), sigmoid relaxation, the bypass
connection and DSRH's learning-rate multipliers and hash-layer drop. Lai et al.'s own network (its
divide-and-encode module and margin 1 on squared distances of [0, 1] codes) is not reproduced.
"""
from __future__ import annotations

from hashbench.method import variant
from hashbench.methods.dsrh import DSRH
from hashbench.registry import METHODS


@METHODS.register_module(name="triplet")
@variant(DSRH, weighting="none", similarity="binary")
def triplet():
    """Triplet ranking hashing (Lai et al., CVPR 2015): DSRH's loss with w = 1 and binary relevance."""
