"""Shared pieces of hashing losses, each with one job.

A loss in ``methods/`` writes only its paper's formula; these helpers provide what every loss
needs: the relaxed Hamming distance, label similarity (:mod:`hashbench.similarity`), triplet
enumeration and reduction.
"""
from __future__ import annotations

import torch

from hashbench.errors import HashbenchError
from hashbench.registry import SIMILARITIES, lookup

REDUCTIONS = ("mean", "sum")


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
