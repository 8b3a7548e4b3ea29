"""DCH's loss against a plain loop over the paper's Eqs. 2, 6, 8 and 9, its constants pinned by
hand-computed cases, the released code's variants, and its refusals."""
from __future__ import annotations

import math

import pytest
import torch

from hashbench.errors import HashbenchError
from hashbench.registry import LOSSES, METHODS, build

# 5 items, 4 labels, multi-label: similar (share a label) and dissimilar pairs both present
LABELS = torch.tensor([[1, 1, 0, 0], [1, 0, 0, 0], [0, 0, 1, 0], [0, 1, 1, 0], [0, 0, 0, 1]], dtype=torch.float32)


def _codes(seed=0, b=5, k=6):
    g = torch.Generator().manual_seed(seed)
    return torch.tanh(torch.randn(b, k, generator=g, dtype=torch.float64)).requires_grad_()


def _norm(v):
    return torch.sqrt((v * v).sum())


def _oracle(h, y, gamma, lam, distance="cosine", quantization="cauchy"):
    """(1/B) sum_i [ 1/(B-1) sum_{j != i} w_ij (s_ij log(d_ij/gamma) + log(1 + gamma/d_ij)) + lam Q_i ]."""
    n, k = h.shape
    pairs = [(i, j) for i in range(n) for j in range(n) if i != j]
    similar = {(i, j): float(y[i] @ y[j]) > 0 for i, j in pairs}
    n1 = sum(similar.values())
    n0 = len(pairs) - n1
    total = h.new_zeros(())
    for i, j in pairs:
        s = 1.0 if similar[(i, j)] else 0.0
        w = len(pairs) / n1 if similar[(i, j)] else len(pairs) / n0  # Eq. 2
        if distance == "cosine":  # Eq. 6 (with the released code's 1e-6)
            d = k / 2 * (1 - (h[i] * h[j]).sum() / (_norm(h[i]) * _norm(h[j])) + 1e-6)
        else:  # released code: squared Euclidean + 0.001
            d = ((h[i] - h[j]) ** 2).sum() + 0.001
        total = total + w * (s * torch.log(d / gamma) + torch.log(1 + gamma / d)) / (n - 1)  # Eq. 8
    for i in range(n):
        if quantization == "cauchy":  # Eq. 9: d(|h_i|, 1)
            a, one = h[i].abs(), torch.ones(k, dtype=h.dtype)
            d = k / 2 * (1 - (a * one).sum() / (_norm(a) * _norm(one)) + 1e-6)
            q = torch.log(1 + d / gamma)
        else:
            q = sum((h[i, b].abs() - 1) ** 2 for b in range(k)) / k
        total = total + lam * q
    return total / n


@pytest.mark.parametrize("distance, quantization", [("cosine", "cauchy"), ("euclidean", "square"),
                                                    ("cosine", "square")])
def test_value_and_gradient_match_the_formula(distance, quantization):
    loss = build(LOSSES, dict(type="dch", gamma=20.0, q_lambda=0.1, distance=distance, quantization=quantization))
    h1, h2 = _codes(), _codes()
    out = loss(h1, LABELS)
    out["loss"].backward()
    ref = _oracle(h2, LABELS, 20.0, 0.1, distance, quantization)
    ref.backward()
    torch.testing.assert_close(out["loss"], ref, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(h1.grad, h2.grad, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(out["cauchy"] + 0.1 * out["quantization"], out["loss"].detach())


def test_sum_reduction_is_batch_size_times_mean():
    h = _codes(1)
    mean = build(LOSSES, dict(type="dch"))(h, LABELS)["loss"]
    total = build(LOSSES, dict(type="dch", reduction="sum"))(h, LABELS)["loss"]
    torch.testing.assert_close(total, 5 * mean)


def test_opposite_codes_at_distance_gamma_cost_log_two():
    """Two dissimilar items with opposite ±1 codes of K = 20 = gamma bits: d = K (1 + 5e-7), the
    Cauchy probability of 'similar' is about 1/2, so the pair costs -log(1 - 1/2) = log 2; the codes are
    binary, so the quantisation loss is log(1 + 1e-5 / 20)."""
    h = torch.ones(2, 20, dtype=torch.float64)
    h[1] = -1
    y = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    out = build(LOSSES, dict(type="dch"))(h, y)  # defaults: gamma 20, lambda 0.1
    d = 20 * (1 + 5e-7)
    assert float(out["cauchy"]) == pytest.approx(math.log(1 + 20 / d), rel=1e-12)
    assert float(out["cauchy"]) == pytest.approx(math.log(2), rel=1e-6)
    assert float(out["quantization"]) == pytest.approx(math.log1p(10 * 1e-6 / 20), rel=1e-9)
    # a similar pair with the same codes costs log(1 + d/gamma), d = K/2 * 1e-6: about 0
    same = build(LOSSES, dict(type="dch"))(torch.ones(2, 20, dtype=torch.float64), torch.ones(2, 1))
    assert float(same["cauchy"]) == pytest.approx(math.log1p(10 * 1e-6 / 20), rel=1e-9)


def test_quantization_is_cauchy_in_the_distance_of_abs_codes_to_ones():
    """Half the bits at 0 and half at ±1: cos(|h|, 1) = 1/sqrt(2), d = K/2 (1 - 1/sqrt(2) + 1e-6)."""
    h = torch.zeros(2, 8, dtype=torch.float64)
    h[:, :4] = torch.tensor([1.0, -1.0, 1.0, -1.0])
    out = build(LOSSES, dict(type="dch"))(h, torch.ones(2, 1))
    d = 4 * (1 - 1 / math.sqrt(2) + 1e-6)
    assert float(out["quantization"]) == pytest.approx(math.log1p(d / 20), rel=1e-12)
    assert float(out["loss"] - out["cauchy"]) == pytest.approx(0.1 * math.log1p(d / 20), rel=1e-9)


def test_balance_makes_each_class_of_pairs_weigh_the_same():
    """With w = |S|/|S1| and |S|/|S0|, the batch loss is the mean cross-entropy of the similar pairs
    plus that of the dissimilar pairs (times |S| / (B (B-1)) = 1), whatever their numbers."""
    loss = build(LOSSES, dict(type="dch", q_lambda=0.0))
    h = _codes(2).detach()
    d = 3 * (1 - (h @ h.T) / (h.norm(dim=1)[:, None] * h.norm(dim=1)[None, :]) + 1e-6)
    s = (LABELS @ LABELS.T > 0).double()
    off = ~torch.eye(5, dtype=torch.bool)
    sim = torch.log1p(d / 20)[(s > 0) & off].mean()
    dis = torch.log1p(20 / d)[(s == 0) & off].mean()
    torch.testing.assert_close(loss(h, LABELS)["loss"], sim + dis, rtol=1e-12, atol=0)


def test_defaults():
    method = build(METHODS, dict(type="dch", n_bits=32))
    assert method.family == "pairwise" and method.relaxation == "tanh" and method.bypass is False
    assert method.lr_mult == {"head.": 10.0}
    loss = method.loss
    assert (loss.gamma, loss.q_lambda, loss.distance, loss.quantization) == (20.0, 0.1, "cosine", "cauchy")
    assert loss.similarity_name == "binary"
    z = torch.randn(3, 32)
    torch.testing.assert_close(method.relax(z, 0.3), torch.tanh(z))


@pytest.mark.parametrize("params, message", [
    (dict(gamma=0.0), "gamma"),
    (dict(q_lambda=-1.0), "q_lambda"),
    (dict(distance="hamming"), "distance must be one of cosine, euclidean; got 'hamming'"),
    (dict(quantization="l1"), "quantization must be one of cauchy, square; got 'l1'"),
    (dict(similarity="graded"), "graded"),
])
def test_invalid_values_are_refused_in_one_line(params, message):
    with pytest.raises(HashbenchError, match=message) as err:
        build(METHODS, dict(type="dch", n_bits=8, **params))
    assert "\n" not in str(err.value)
