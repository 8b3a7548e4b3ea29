"""HashNet's weighted loss against a plain loop over pairs, its class-balance weights and continuation."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from hashbench.methods.hashnet import balance_weights
from hashbench.registry import LOSSES, METHODS, build

LABELS = torch.tensor([[1, 1, 0, 0], [1, 0, 0, 0], [0, 1, 1, 0], [0, 0, 0, 1], [1, 1, 1, 0], [0, 0, 1, 1]],
                      dtype=torch.float32)


def _codes(seed=0, b=6, k=8):
    g = torch.Generator().manual_seed(seed)
    return torch.tanh(torch.randn(b, k, generator=g, dtype=torch.float64)).requires_grad_()


def _oracle(h, y, alpha, continuous):
    """sum_{i != j} w_ij (log(1 + e^{alpha <h_i,h_j>}) - alpha s_ij <h_i,h_j>) / B, weights counted by hand."""
    n = len(h)
    pairs = [(i, j) for i in range(n) for j in range(n) if i != j]
    similar = {(i, j): float(y[i] @ y[j]) > 0 for i, j in pairs}
    n1 = sum(similar.values())
    n0 = len(pairs) - n1
    total = h.new_zeros(())
    for i, j in pairs:
        s = float(similar[(i, j)])
        if similar[(i, j)]:
            c = float(y[i] @ y[j]) / math.sqrt(float(y[i].sum()) * float(y[j].sum())) if continuous else 1.0
            w = c * len(pairs) / n1
        else:
            w = len(pairs) / n0
        x = alpha * (h[i] * h[j]).sum()
        total = total + w * (torch.log(1 + torch.exp(x)) - s * x)
    return total / n


@pytest.mark.parametrize("continuous", ["cosine", "none"])
def test_value_and_gradient_match_the_formula(continuous):
    loss = build(LOSSES, dict(type="hashnet", continuous=continuous))  # alpha None: 10 / K
    h1, h2 = _codes(), _codes()
    out = loss(h1, LABELS)
    out["loss"].backward()
    ref = _oracle(h2, LABELS, alpha=10 / 8, continuous=continuous == "cosine")
    ref.backward()
    # the label cosine is computed in float32 by the shared similarity: tolerances allow for that
    torch.testing.assert_close(out["loss"], ref, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(h1.grad, h2.grad, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(out["similar"] + out["dissimilar"], out["loss"].detach())


def test_class_balance_weights_by_hand():
    # items 0 and 1 share a label; 2 and 3 share nothing with anyone: 12 ordered pairs, 2 similar
    y = torch.tensor([[1, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1]], dtype=torch.float32)
    s = (y @ y.T > 0).float()
    others = ~torch.eye(4, dtype=torch.bool)
    w = balance_weights(s, others)
    expected = np.full((4, 4), 12 / 10)
    expected[0, 1] = expected[1, 0] = 12 / 2
    np.fill_diagonal(expected, 0.0)
    np.testing.assert_allclose(w.numpy(), expected, rtol=1e-6)
    # each class of pairs carries total weight |S|
    assert float(w[s.bool() & others].sum()) == pytest.approx(12.0)
    assert float(w[~s.bool() & others].sum()) == pytest.approx(12.0)


def test_continuous_similarity_only_matters_for_multi_label_pairs():
    h = _codes(4).detach()
    single = torch.eye(3)[[0, 0, 1, 2, 1, 0]]
    cos = build(LOSSES, dict(type="hashnet", continuous="cosine"))
    plain = build(LOSSES, dict(type="hashnet", continuous="none"))
    torch.testing.assert_close(cos(h, single)["loss"], plain(h, single)["loss"])
    assert not torch.allclose(cos(h, LABELS)["loss"], plain(h, LABELS)["loss"])


def test_beta_grows_with_progress():
    method = build(METHODS, dict(type="hashnet", n_bits=16))
    progress = np.linspace(0, 1, 101)
    betas = np.array([method.beta(p) for p in progress])
    assert betas[0] == 1.0
    assert betas[-1] == pytest.approx(math.sqrt(1 + 0.005 * 10000))
    assert np.all(np.diff(betas) >= 0) and betas[50] > betas[10] > betas[0]
    z = torch.linspace(-2, 2, 16).repeat(2, 1)
    early, late = method.relax(z, 0.0), method.relax(z, 1.0)
    torch.testing.assert_close(early, torch.tanh(z))
    assert (late - torch.sign(z)).abs().mean() < (early - torch.sign(z)).abs().mean()


def test_defaults():
    method = build(METHODS, dict(type="hashnet", n_bits=32))
    assert method.loss.alpha == pytest.approx(10 / 32)
    assert method.loss.similarity_name == "binary" and method.loss.continuous == "cosine"
    assert method.lr_mult == {"head.": 10.0} and method.bypass is False
