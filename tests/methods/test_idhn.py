"""IDHN's loss against a plain loop over all pairs (hard pairs: cross-entropy, soft pairs: squared
error), its constants pinned by hand-computed cases, its softsign codes and its refusals."""
from __future__ import annotations

import math

import pytest
import torch

from hashbench.errors import HashbenchError
from hashbench.registry import LOSSES, METHODS, build
from hashbench.similarity import cosine

# 5 items, 4 labels: identical label sets (0, 4), disjoint ones and partial overlaps (soft pairs)
LABELS = torch.tensor([[1, 1, 0, 0], [1, 0, 0, 0], [0, 1, 1, 0], [0, 0, 0, 1], [1, 1, 0, 0]], dtype=torch.float32)


def _codes(seed=0, b=5, k=6):
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(b, k, generator=g, dtype=torch.float64) * 2
    return (z / (1 + z.abs())).requires_grad_()


def _oracle(h, s, beta, gamma, alpha, self_pairs=True):
    """mean over (i, j) of [hard: log(1 + e^theta) - s theta | soft: gamma K ((<h_i,h_j> + K)/2K - s)^2]
    + alpha * mean over (i, k) of | |h_ik| - 1 |, theta = beta/K <h_i, h_j>; s is given (the label cosine)."""
    n, k = h.shape
    total = h.new_zeros(())
    for i in range(n):
        partners = [j for j in range(n) if self_pairs or j != i]
        for j in partners:
            ip = sum(h[i, b] * h[j, b] for b in range(k))
            sij = float(s[i, j])
            if sij < 0.01 or sij > 0.99:
                theta = beta / k * ip
                term = torch.log(1 + torch.exp(theta)) - sij * theta
            else:
                term = gamma * k * ((ip + k) / (2 * k) - sij) ** 2
            total = total + term / len(partners)
        total = total + alpha * sum(abs(abs(h[i, b]) - 1) for b in range(k)) / k
    return total / n


def test_label_cosine_and_the_hard_soft_split_by_hand():
    s = cosine(LABELS, LABELS)
    assert float(s[0, 4]) == pytest.approx(1.0) and float(s[0, 3]) == 0.0  # hard: same set, disjoint
    assert float(s[0, 1]) == pytest.approx(1 / math.sqrt(2), abs=1e-7)  # {0,1} vs {0}: soft
    assert float(s[0, 2]) == pytest.approx(0.5, abs=1e-7)  # {0,1} vs {1,2}: soft


@pytest.mark.parametrize("self_pairs", [True, False])
def test_value_and_gradient_match_the_formula(self_pairs):
    loss = build(LOSSES, dict(type="idhn", self_pairs=self_pairs))  # beta 5, gamma 0.1, alpha 0.1
    h1, h2 = _codes(), _codes()
    out = loss(h1, LABELS)
    out["loss"].backward()
    # the shared cosine is float32; the oracle reads the same values (checked by hand above)
    ref = _oracle(h2, cosine(LABELS, LABELS).double(), 5.0, 0.1, 0.1, self_pairs)
    ref.backward()
    torch.testing.assert_close(out["loss"], ref, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(h1.grad, h2.grad, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(out["cross_entropy"] + 0.1 * out["mse"] + 0.1 * out["regularizer"],
                               out["loss"].detach())


def test_constants_by_hand():
    """Two ±1 codes, K = 6. Equal codes with a soft similarity 1/2 ({0,1} vs {0,2}):
    soft pair gamma K ((K + K)/2K - 1/2)^2 = 0.1 * 6 * 0.25 = 0.15; the self pairs are hard and similar,
    theta = beta/K * K = 5: log(1 + e^5) - 5 = log(1 + e^-5). Binary codes: no regulariser."""
    h = torch.ones(2, 6, dtype=torch.float64)
    y = torch.tensor([[1.0, 1.0, 0.0], [1.0, 0.0, 1.0]])
    out = build(LOSSES, dict(type="idhn"))(h, y)
    assert float(out["mse"]) * 0.1 == pytest.approx(0.15 / 2, rel=1e-6)  # one soft partner of two
    # (s_ii is the float32 label cosine, 1 to 1e-7, times theta = 5)
    assert float(out["cross_entropy"]) == pytest.approx(math.log1p(math.exp(-5)) / 2, abs=1e-6)
    assert float(out["regularizer"]) == 0.0
    # dissimilar (hard) pair of orthogonal codes: theta = 0, log 2; half-way codes: | |h| - 1 | = 1/2
    h = torch.tensor([[0.5, 0.5, 0.5, 0.5], [0.5, -0.5, 0.5, -0.5]], dtype=torch.float64)
    out = build(LOSSES, dict(type="idhn", self_pairs=False))(h, torch.eye(2))
    assert float(out["cross_entropy"]) == pytest.approx(math.log(2), rel=1e-12)
    assert float(out["loss"]) == pytest.approx(math.log(2) + 0.1 * 0.5, rel=1e-12)


def test_sum_reduction_is_batch_size_times_mean():
    h = _codes(1)
    mean = build(LOSSES, dict(type="idhn"))(h, LABELS)["loss"]
    total = build(LOSSES, dict(type="idhn", reduction="sum"))(h, LABELS)["loss"]
    torch.testing.assert_close(total, 5 * mean)


def test_defaults_and_softsign_codes():
    method = build(METHODS, dict(type="idhn", n_bits=16))
    assert method.family == "pairwise" and method.relaxation == "softsign" and method.bypass is False
    assert method.lr_mult == {}
    loss = method.loss
    assert (loss.beta, loss.gamma, loss.alpha, loss.self_pairs) == (5.0, 0.1, 0.1, True)
    z = torch.tensor([[-3.0, -0.5, 0.0, 0.5, 3.0, 100.0]])
    torch.testing.assert_close(method.relax(z, 0.5), z / (1 + z.abs()))
    tanh = build(METHODS, dict(type="idhn", n_bits=6, relaxation="tanh"))
    torch.testing.assert_close(tanh.relax(z, 0.5), torch.tanh(z))


@pytest.mark.parametrize("params, message", [
    (dict(beta=0.0), "beta"),
    (dict(gamma=-0.1), "gamma"),
    (dict(alpha=-1.0), "alpha"),
    (dict(relaxation="relu"), "relaxation must be one of softsign, sigmoid, tanh, identity; got 'relu'"),
    (dict(reduction="max"), "reduction must be one of mean, sum; got 'max'"),
])
def test_invalid_values_are_refused_in_one_line(params, message):
    with pytest.raises(HashbenchError, match=message) as err:
        build(METHODS, dict(type="idhn", n_bits=8, **params))
    assert "\n" not in str(err.value)
