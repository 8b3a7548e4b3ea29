"""DSH's loss against a plain loop over the paper's unique pairs, and its defaults."""
from __future__ import annotations

import pytest
import torch

from hashbench.errors import HashbenchError
from hashbench.registry import LOSSES, METHODS, build

LABELS = torch.tensor([[1, 1, 0, 0], [1, 0, 0, 0], [0, 1, 1, 0], [0, 0, 0, 1], [1, 1, 1, 0], [0, 0, 1, 1]],
                      dtype=torch.float32)


def _codes(seed=0, b=6, k=8, scale=1.5):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(b, k, generator=g, dtype=torch.float64) * scale).requires_grad_()


def _oracle(b, y, margin, alpha):
    """sum_{i<j} [1/2 s D + 1/2 (1-s) max(m - D, 0) + alpha (|||b_i|-1||_1 + |||b_j|-1||_1)] / B."""
    total = b.new_zeros(())
    n = len(b)
    for i in range(n):
        for j in range(i + 1, n):
            s = float(float(y[i] @ y[j]) > 0)
            dist = ((b[i] - b[j]) ** 2).sum()
            total = total + 0.5 * s * dist + 0.5 * (1 - s) * torch.clamp(margin - dist, min=0)
            total = total + alpha * ((b[i].abs() - 1).abs().sum() + (b[j].abs() - 1).abs().sum())
    return total / n


@pytest.mark.parametrize("scale", [0.3, 1.5])  # most dissimilar pairs inside / outside the margin
def test_value_and_gradient_match_the_formula(scale):
    loss = build(LOSSES, dict(type="dsh"))  # margin None: 2K = 16
    b1, b2 = _codes(scale=scale), _codes(scale=scale)
    out = loss(b1, LABELS)
    out["loss"].backward()
    ref = _oracle(b2, LABELS, margin=16.0, alpha=0.01)
    ref.backward()
    torch.testing.assert_close(out["loss"], ref, rtol=1e-6, atol=1e-8)
    torch.testing.assert_close(b1.grad, b2.grad, rtol=1e-6, atol=1e-8)
    torch.testing.assert_close(out["contrastive"] + 0.01 * out["regularizer"], out["loss"].detach())


def test_explicit_margin_and_alpha():
    b1, b2 = _codes(2), _codes(2)
    out = build(LOSSES, dict(type="dsh", margin=5.0, alpha=0.5))(b1, LABELS)
    out["loss"].backward()
    ref = _oracle(b2, LABELS, margin=5.0, alpha=0.5)
    ref.backward()
    torch.testing.assert_close(out["loss"], ref)
    torch.testing.assert_close(b1.grad, b2.grad)


def test_defaults_follow_the_paper():
    method = build(METHODS, dict(type="dsh", n_bits=12))
    assert method.loss.margin == 24.0 and method.loss.alpha == 0.01
    assert method.relaxation == "identity" and method.bypass is False
    z = torch.randn(3, 12)
    assert torch.equal(method.relax(z, 0.0), z)


def test_graded_similarity_is_refused():
    with pytest.raises(HashbenchError, match="binary"):
        build(METHODS, dict(type="dsh", n_bits=8, similarity="graded"))
