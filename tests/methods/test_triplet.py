"""The triplet baseline is DSRH's loss with w = 1 and binary relevance — checked against DSRHLoss and a loop."""
from __future__ import annotations

import pytest
import torch

from hashbench.methods.dsrh import DSRHLoss
from hashbench.registry import METHODS, build

LABELS = torch.tensor([[1, 1, 0, 0], [1, 0, 0, 0], [0, 1, 1, 0], [0, 0, 0, 1], [1, 1, 1, 0], [0, 0, 1, 1]],
                      dtype=torch.float32)


def _codes(seed=0, b=6, k=8):
    g = torch.Generator().manual_seed(seed)
    return (2 * torch.sigmoid(torch.randn(b, k, generator=g, dtype=torch.float64) * 2) - 1).requires_grad_()


def _oracle(b, y, margin, alpha):
    """sum over anchors q, pairs (i, j) with i similar to q and j not, of max(0, rho + d_qi - d_qj),
    plus alpha/2 sum_k (mean_n b_nk)^2, the triplet part averaged over anchors."""
    n, k = b.shape
    total = b.new_zeros(())
    for q in range(n):
        for i in range(n):
            for j in range(n):
                if q in (i, j) or not (float(y[q] @ y[i]) > 0 and float(y[q] @ y[j]) == 0):
                    continue
                d_qi = (k - (b[q] * b[i]).sum()) / 2
                d_qj = (k - (b[q] * b[j]).sum()) / 2
                total = total + torch.clamp(margin + d_qi - d_qj, min=0)
    bal = sum(0.5 * (b[:, c].sum() / n) ** 2 for c in range(k))
    return total / n + alpha * bal


def test_value_and_gradient_match_the_formula():
    method = build(METHODS, dict(type="triplet", n_bits=8))
    b1, b2 = _codes(), _codes()
    out = method.loss(b1, LABELS)
    out["loss"].backward()
    ref = _oracle(b2, LABELS, margin=5 * 8 / 64, alpha=1.0)
    ref.backward()
    torch.testing.assert_close(out["loss"], ref, rtol=1e-6, atol=1e-8)
    torch.testing.assert_close(b1.grad, b2.grad, rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("n_bits", [8, 64])
def test_equals_the_unweighted_binary_dsrh_loss(n_bits):
    method = build(METHODS, dict(type="triplet", n_bits=n_bits))
    assert isinstance(method.loss, DSRHLoss)
    reference = DSRHLoss(margin=5.0 * n_bits / 64, weighting="none", similarity="binary")
    b1, b2 = _codes(1, k=n_bits), _codes(1, k=n_bits)
    ours, theirs = method.loss(b1, LABELS), reference(b2, LABELS)
    ours["loss"].backward()
    theirs["loss"].backward()
    torch.testing.assert_close(ours["loss"], theirs["loss"])
    torch.testing.assert_close(b1.grad, b2.grad)


def test_differs_from_dsrh_on_graded_data():
    b = _codes(2).detach()
    triplet = build(METHODS, dict(type="triplet", n_bits=8)).loss(b, LABELS)["loss"]
    dsrh = build(METHODS, dict(type="dsrh", n_bits=8)).loss(b, LABELS)["loss"]
    assert not torch.allclose(triplet, dsrh)


def test_shares_everything_else_with_dsrh():
    triplet, dsrh = build(METHODS, dict(type="triplet", n_bits=16)), build(METHODS, dict(type="dsrh", n_bits=16))
    assert (triplet.loss.weighting, triplet.loss.similarity_name) == ("none", "binary")
    assert triplet.loss.margin == dsrh.loss.margin and triplet.loss.alpha == dsrh.loss.alpha
    assert (triplet.relaxation, triplet.bypass, triplet.lr_mult, triplet.head_lr_drop) == \
        (dsrh.relaxation, dsrh.bypass, dsrh.lr_mult, dsrh.head_lr_drop)
