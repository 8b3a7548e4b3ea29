"""DHN's loss against a plain loop over the paper's pairs and the released Caffe layer's formula,
its constants (alpha = 1, log cosh, lambda) pinned by hand-computed cases, and its refusals."""
from __future__ import annotations

import math

import pytest
import torch

from hashbench.errors import HashbenchError
from hashbench.methods.dhn import DHNLoss, log_cosh
from hashbench.registry import LOSSES, METHODS, build

# 5 items, 4 labels, multi-label (item 3 shares nothing with items 1 and 2)
LABELS = torch.tensor([[1, 1, 0, 0], [1, 0, 0, 0], [0, 1, 1, 0], [0, 0, 0, 1], [1, 0, 1, 1]], dtype=torch.float32)


def _z(seed=0, b=5, k=6):
    g = torch.Generator().manual_seed(seed)
    return (1.5 * torch.randn(b, k, generator=g, dtype=torch.float64)).requires_grad_()


def _paper(z, y, lam_p, alpha=1.0):
    """The paper's C = sum over the unordered pairs {i, j} of the batch of
    log(1 + e^<z_i,z_j>) - s_ij <z_i,z_j> + lam_p * (Q_i + Q_j), Q_i = sum_k log cosh(|z_ik| - 1)."""
    n, k = z.shape
    total = z.new_zeros(())
    for i in range(n):
        for j in range(i + 1, n):
            s = 1.0 if float(y[i] @ y[j]) > 0 else 0.0
            ip = alpha * sum(z[i, d] * z[j, d] for d in range(k))
            q_i = sum(torch.log(torch.cosh(z[i, d].abs() - 1)) for d in range(k))
            q_j = sum(torch.log(torch.cosh(z[j, d].abs() - 1)) for d in range(k))
            total = total + torch.log(1 + torch.exp(ip)) - s * ip + lam_p * (q_i + q_j)
    return total


def _released(z, y, q_gamma):
    """The released Caffe layer (pairwise_loss_layer.cu), the objective its backward differentiates:
    the mean over all B x B entries (self-pairs included) of log(1 + e^ip) - s ip, plus
    q_gamma / B * sum_i sum_k log cosh(|z_ik| - 1)."""
    n, k = z.shape
    pairs = z.new_zeros(())
    for i in range(n):
        for j in range(n):
            s = 1.0 if float(y[i] @ y[j]) > 0 else 0.0
            ip = sum(z[i, d] * z[j, d] for d in range(k))
            pairs = pairs + torch.log(1 + torch.exp(ip)) - s * ip
    quant = sum(torch.log(torch.cosh(z[i, d].abs() - 1)) for i in range(n) for d in range(k))
    return pairs / (n * n) + q_gamma / n * quant


def _grad(fn, z):
    z = z.detach().clone().requires_grad_()
    value = fn(z)
    value.backward()
    return value.detach(), z.grad


@pytest.mark.parametrize("lam_p", [0.15, 2.0])
def test_value_and_gradient_match_the_papers_sum_over_pairs(lam_p):
    """Our mean-normalised loss times B(B-1)/2 is the paper's C when lambda = 2 lambda_p; the
    gradient w.r.t. the pre-activations (through the tanh) matches too."""
    method = build(METHODS, dict(type="dhn", n_bits=6, lam=2 * lam_p))
    z = _z()
    n = len(z)
    ours, g_ours = _grad(lambda p: method.compute_loss(method.relax(p, 0.5), LABELS, torch.arange(n))["loss"]
                         * (n * (n - 1) / 2), z)
    ref, g_ref = _grad(lambda p: _paper(torch.tanh(p), LABELS, lam_p), z)
    torch.testing.assert_close(ours, ref, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(g_ours, g_ref, rtol=1e-10, atol=1e-12)


def test_self_pairs_give_the_released_layers_objective():
    loss = build(LOSSES, dict(type="dhn", self_pairs=True))  # lam default 0.3 = q_gamma
    z = _z(1)
    ours, g_ours = _grad(lambda p: loss(torch.tanh(p), LABELS)["loss"], z)
    ref, g_ref = _grad(lambda p: _released(torch.tanh(p), LABELS, 0.3), z)
    torch.testing.assert_close(ours, ref, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(g_ours, g_ref, rtol=1e-10, atol=1e-12)


def test_alpha_scales_the_inner_product():
    loss = build(LOSSES, dict(type="dhn", alpha=0.5, lam=0.4))
    h = torch.tanh(_z(2)).detach()
    ref = _paper(h, LABELS, 0.2, alpha=0.5) * 2 / (5 * 4)
    torch.testing.assert_close(loss(h, LABELS)["loss"], ref, rtol=1e-10, atol=1e-12)


def test_hand_computed_cases_pin_the_inner_product_and_the_log_cosh():
    loss = build(LOSSES, dict(type="dhn", lam=1.0))
    similar = torch.tensor([[1.0, 0.0], [1.0, 0.0]])
    # exactly binary codes: Q = 0; orthogonal codes: <z_i, z_j> = 0, so each pair costs log 2
    out = loss(torch.tensor([[1.0, 1.0], [1.0, -1.0]], dtype=torch.float64), similar)
    assert float(out["quantization"]) == 0.0
    assert float(out["loss"]) == pytest.approx(math.log(2), rel=1e-12)
    # identical codes (1, 1), similar: log(1 + e^2) - 2 (alpha = 1: the plain dot product, not 1/2 of it)
    out = loss(torch.ones(2, 2, dtype=torch.float64), similar)
    assert float(out["likelihood"]) == pytest.approx(math.log(1 + math.exp(-2)), rel=1e-12)
    # the same codes, dissimilar: log(1 + e^2)
    out = loss(torch.ones(2, 2, dtype=torch.float64), torch.eye(2))
    assert float(out["likelihood"]) == pytest.approx(math.log(1 + math.exp(2)), rel=1e-12)
    # codes at 0: every bit costs log cosh(-1) = 0.4338..., not |0 - 1| = 1 nor (0 - 1)^2 = 1
    out = loss(torch.zeros(2, 3, dtype=torch.float64), similar)
    assert float(out["quantization"]) == pytest.approx(3 * math.log(math.cosh(1.0)), rel=1e-12)
    assert float(out["loss"]) == pytest.approx(math.log(2) + 3 * math.log(math.cosh(1.0)), rel=1e-12)


def test_log_cosh_is_finite_and_exact_far_out():
    x = torch.tensor([-1e4, -30.0, -1.0, 0.0, 0.5, 30.0, 1e4], dtype=torch.float64)
    got = log_cosh(x)
    assert torch.isfinite(got).all()
    mid = x.abs() < 100
    torch.testing.assert_close(got[mid], torch.log(torch.cosh(x[mid])), rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(got[~mid], x[~mid].abs() - math.log(2), rtol=1e-12, atol=0.0)


def test_sum_reduction_and_terms():
    h = torch.tanh(_z(3)).detach()
    mean = build(LOSSES, dict(type="dhn"))(h, LABELS)
    total = build(LOSSES, dict(type="dhn", reduction="sum"))(h, LABELS)
    torch.testing.assert_close(total["loss"], 5 * mean["loss"])
    torch.testing.assert_close(mean["likelihood"] + 0.3 * mean["quantization"], mean["loss"])


def test_defaults():
    method = build(METHODS, dict(type="dhn", n_bits=32))
    assert isinstance(method.loss, DHNLoss)
    assert method.loss.alpha == 1.0 and method.loss.lam == 0.3 and method.loss.self_pairs is False
    assert method.loss.similarity_name == "binary"
    assert method.relaxation == "tanh" and method.bypass is False and method.lr_mult == {"head.": 10.0}
    z = torch.randn(3, 32)
    torch.testing.assert_close(method.relax(z, 0.7), torch.tanh(z))


@pytest.mark.parametrize("params, match", [
    (dict(alpha=0.0), "alpha must be a number > 0; got 0"),
    (dict(lam=-1.0), "lam must be a number >= 0; got -1"),
    (dict(self_pairs="maybe"), "self_pairs must be true or false"),
    (dict(similarity="graded"), "dhn needs a similarity with values in \\[0, 1\\]; got 'graded'"),
    (dict(relaxation="sigmoid"), "has no parameter 'relaxation'"),
])
def test_invalid_values_are_refused_in_one_line(params, match):
    with pytest.raises(HashbenchError, match=match) as err:
        build(METHODS, dict(type="dhn", n_bits=8, **params))
    assert "\n" not in str(err.value)
