"""DTSH's loss against a plain loop over the paper's triplets, and its defaults."""
from __future__ import annotations

import pytest
import torch

from hashbench.registry import LOSSES, METHODS, build

LABELS = torch.tensor([[1, 1, 0, 0], [1, 0, 0, 0], [0, 1, 1, 0], [0, 0, 0, 1], [1, 1, 1, 0], [0, 0, 1, 1]],
                      dtype=torch.float32)


def _codes(seed=0, b=6, k=8, scale=1.5):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(b, k, generator=g, dtype=torch.float64) * scale).requires_grad_()


def _oracle(u, y, margin, lam, graded=False):
    """-sum_{(q,i,j)} log sigmoid(theta_qi - theta_qj - margin) + lam sum_n ||sign(u_n) - u_n||^2, over B."""
    total = u.new_zeros(())
    n = len(u)

    def rel(a, b):
        shared = float(y[a] @ y[b])
        return shared if graded else float(shared > 0)

    for q in range(n):
        for i in range(n):
            for j in range(n):
                if q in (i, j) or not rel(q, i) > rel(q, j):
                    continue
                x = 0.5 * (u[q] * u[i]).sum() - 0.5 * (u[q] * u[j]).sum() - margin
                total = total - torch.log(torch.sigmoid(x))
        for k in range(u.shape[1]):
            b = 1.0 if float(u[q, k].detach()) > 0 else -1.0
            total = total + lam * (b - u[q, k]) ** 2
    return total / n


@pytest.mark.parametrize("similarity", ["binary", "graded"])
def test_value_and_gradient_match_the_formula(similarity):
    loss = build(LOSSES, dict(type="dtsh", similarity=similarity))  # margin None: K/2 = 4, lambda 1
    u1, u2 = _codes(scale=0.7), _codes(scale=0.7)
    out = loss(u1, LABELS)
    out["loss"].backward()
    ref = _oracle(u2, LABELS, margin=4.0, lam=1.0, graded=similarity == "graded")
    ref.backward()
    torch.testing.assert_close(out["loss"], ref, rtol=1e-6, atol=1e-8)
    torch.testing.assert_close(u1.grad, u2.grad, rtol=1e-6, atol=1e-8)
    torch.testing.assert_close(out["triplet"] + out["quantization"], out["loss"].detach())


def test_chunking_does_not_change_the_loss():
    u = _codes(3)
    whole = build(LOSSES, dict(type="dtsh", lam=0.5, margin=2.0))(u, LABELS)
    chunked = build(LOSSES, dict(type="dtsh", lam=0.5, margin=2.0, chunk=4))(u, LABELS)
    torch.testing.assert_close(whole["loss"], chunked["loss"])
    assert int(whole["triplets"]) == int(chunked["triplets"]) > 0


def test_defaults():
    method = build(METHODS, dict(type="dtsh", n_bits=32))
    assert method.loss.margin == 16.0 and method.loss.lam == 1.0
    assert method.loss.similarity_name == "binary"
    assert method.relaxation == "identity" and method.bypass is False
