"""The loss contract, and the shared pieces of hashing losses, each with one job.

Every loss is a :class:`HashLoss` and is called one way::

    loss(codes, labels, indices=None, tuples=None, ref=None) -> dict(loss=<scalar>, <term>=...)

- ``codes`` (B, K): the batch's relaxed codes; ``labels`` (B, C): multi-hot;
- ``indices`` (B,): the items' rows in the training split (always given by the trainer);
- ``tuples``: explicit weighted (anchor, closer, farther) triples over the batch rows
  (:class:`hashbench.sampling.Tuples`), from a method's own sampler;
- ``ref``: a :class:`Reference` set the batch is compared with instead of itself (a memory bank).

A loss declares the optional inputs it uses in ``takes``; anything else given is refused. The
returned dict holds the scalar ``loss`` and detached named terms for logging. A loss over the
whole training set learns its size and labels in :meth:`HashLoss.begin`.

A loss in ``methods/`` writes only its paper's formula; the helpers here provide what every loss
needs: the relaxed Hamming distance, label similarity (:mod:`hashbench.similarity`), triplet
enumeration and reduction.
"""
from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn

from hashbench.errors import HashbenchError
from hashbench.registry import SIMILARITIES, lookup

REDUCTIONS = ("mean", "sum")
OPTIONAL_INPUTS = ("tuples", "ref")


class Reference(NamedTuple):
    """A set the batch is compared with instead of itself, e.g. a memory bank of the training set.

    ``codes`` (M, K), ``labels`` (M, C), ``indices`` (M,): the reference items' training-set rows;
    a batch item and a reference item with the same row are the same image, never a pair.
    """

    codes: torch.Tensor
    labels: torch.Tensor
    indices: torch.Tensor


class HashLoss(nn.Module):
    """Base of every hashing loss: one call form (module docstring), optional inputs declared in
    ``takes``, and :meth:`begin` for losses that need the training set's labels up front."""

    takes: frozenset = frozenset()

    def begin(self, labels: torch.Tensor, n_bits: int) -> None:
        """Called once before training with every training label (n, C): allocate state here."""

    def forward(self, codes: torch.Tensor, labels: torch.Tensor, indices: torch.Tensor | None = None,
                tuples=None, ref: Reference | None = None) -> dict[str, torch.Tensor]:
        raise NotImplementedError


def check_inputs(loss: HashLoss, owner: str, **given) -> None:
    """Refuse an optional input (``tuples``, ``ref``) that ``loss`` does not declare in ``takes``."""
    for name, value in given.items():
        if value is not None and name not in loss.takes:
            takes = ", ".join(sorted(loss.takes)) or "neither"
            raise HashbenchError(f"{owner}: its loss {type(loss).__name__} cannot take {name} "
                                 f"(it takes {takes} of {', '.join(OPTIONAL_INPUTS)})")


def self_mask(indices: torch.Tensor, ref_indices: torch.Tensor) -> torch.Tensor:
    """(B, M) mask, False where batch item i and reference item j are the same training image."""
    return indices[:, None] != ref_indices[None, :]


def relaxed_hamming(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Relaxed Hamming distance (K - a·b) / 2 between rows of ``a`` (n, K) and ``b`` (m, K).

    Inputs are relaxed codes in (-1, 1); for ±1 codes this is exactly the Hamming distance.
    Returns (n, m).
    """
    return 0.5 * (a.shape[1] - a @ b.T)


def similarity(name: str):
    """The label-similarity function registered as ``name`` (graded, binary, cosine)."""
    return lookup(SIMILARITIES, name)


def not_self(n_items: int, anchors: torch.Tensor) -> torch.Tensor:
    """(A, n_items) mask, False where the item is the anchor itself."""
    return torch.arange(n_items, device=anchors.device)[None, :] != anchors[:, None]


def ranked_pairs(rel: torch.Tensor, anchors: torch.Tensor | None = None) -> torch.Tensor:
    """Mask of in-batch triplets (q, i, j) with rel[q, i] > rel[q, j], i ≠ q, j ≠ q.

    ``rel`` (A, B) is the relevance of the B batch items to A anchors; ``anchors`` (A,) gives each
    anchor's own index in the batch (default: 0..A-1, i.e. every item is an anchor). Returns an
    (A, B, B) bool mask.
    """
    if anchors is None:
        anchors = torch.arange(rel.shape[0], device=rel.device)
    other = not_self(rel.shape[1], anchors)
    return (rel[:, :, None] > rel[:, None, :]) & other[:, :, None] & other[:, None, :]


class _WeightedRankingHinge(torch.autograd.Function):
    """Per-anchor sum_ij W[q,i,j] * max(0, margin + d[q,i] - d[q,j]), with one (A, B, B) buffer.

    Plain autograd keeps the hinge, the weights and the products of every triplet alive for the
    backward pass; the gradient only needs G = W * [hinge > 0], from which
    dL/dd[q,i] = sum_j G[q,i,j] - sum_j G[q,j,i]. The hinge buffer is turned into G in place.
    """

    @staticmethod
    def forward(ctx, d, weights, margin, triplets):
        a, b = d.shape
        hinge = (d + margin)[:, :, None] - d[:, None, :]  # margin + d_qi - d_qj, as written
        hinge.clamp_(min=0)
        per_anchor = torch.bmm(hinge.view(a, 1, b * b), weights.reshape(a, b * b, 1)).view(a)
        on = hinge.gt_(0)  # in place: 1.0 where the hinge is positive, else 0.0
        if triplets is not None:
            active = (on > 0).logical_and_(triplets).sum()
        g = on.mul_(weights)  # G, in the hinge's memory
        if triplets is None:
            active = g.count_nonzero()
        ctx.save_for_backward(g)
        ctx.mark_non_differentiable(active)
        return per_anchor, active

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_per_anchor, _grad_active):
        (g,) = ctx.saved_tensors
        return (g.sum(dim=2) - g.sum(dim=1)) * grad_per_anchor[:, None], None, None, None


def weighted_ranking_hinge(d: torch.Tensor, weights: torch.Tensor, margin: float,
                           triplets: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Weighted triplet hinge of A anchors: per-anchor losses (A,) and the count of active triplets.

    ``d`` (A, B) are distances from each anchor to the batch items (a distance: smaller is
    closer); ``weights`` (A, B, B), zero outside the triplets (q, i, j) to count (e.g.
    :func:`ranked_pairs` times a weight; no gradient flows into it). Returns
    ``sum_ij weights[q,i,j] * max(0, margin + d[q,i] - d[q,j])`` per anchor and the number of
    triplets — entries of the bool mask ``triplets`` (A, B, B), default ``weights != 0`` — whose
    hinge is positive. Same value and gradient as the elementwise formula under autograd, with
    one (A, B, B) temporary instead of several.
    """
    return _WeightedRankingHinge.apply(d, weights.detach(), float(margin), triplets)


def reduce(per_anchor: torch.Tensor, reduction: str) -> torch.Tensor:
    """Reduce per-anchor losses (B,): ``mean`` over all anchors of the batch, or ``sum``."""
    if reduction == "mean":
        return per_anchor.mean()
    if reduction == "sum":
        return per_anchor.sum()
    raise HashbenchError(f"unknown reduction {reduction!r}; valid: {', '.join(REDUCTIONS)}")


def balance(codes: torch.Tensor) -> torch.Tensor:
    """Mean-zero (bit balance) penalty 1/2 * sum_k (mean over the batch of b_k)^2."""
    return 0.5 * codes.mean(dim=0).pow(2).sum()


def quantization_error(codes: torch.Tensor) -> torch.Tensor:
    """Per-item quantisation error ||b_i - u_i||^2 with b_i = sign(u_i); shape (B,).

    ``codes`` (B, K) are real-valued outputs u. The binary code b takes +1 where u > 0 and -1
    elsewhere — the same threshold as encoding — and is a constant (no gradient flows through it).
    Used by DPSH and DTSH.
    """
    b = codes.detach().gt(0).to(codes.dtype) * 2 - 1
    return (b - codes).pow(2).sum(dim=1)


def _probe(fn) -> float:
    """The value ``fn`` gives two identical items that carry two labels (graded: 2, binary/cosine: 1)."""
    y = torch.tensor([[1.0, 1.0, 0.0]])
    return float(fn(y, y).max())


def _in_unit(value: float) -> bool:
    return -1e-6 <= value <= 1 + 1e-6  # cosine in float32 may round to 1.0000001


def unit_similarity(name: str, owner: str):
    """The similarity ``name``, refused unless its values lie in [0, 1].

    Pairwise likelihood and contrastive losses (DPSH, DSH, HashNet) read the similarity as a
    target s_ij in [0, 1]; shared-label counts (``graded``) would make them unbounded below.
    """
    from hashbench.registry import SIMILARITIES, entries

    fn = similarity(name)
    if not _in_unit(_probe(fn)):
        valid = [n for n, f in entries(SIMILARITIES).items() if _in_unit(_probe(f))]
        raise HashbenchError(
            f"{owner} needs a similarity with values in [0, 1]; got {name!r} "
            f"(it gives {_probe(fn):g} for two items sharing two labels); valid: {', '.join(valid)}")
    return fn
