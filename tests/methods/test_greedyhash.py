"""GreedyHash: its loss against a literal transcription (straight-through sign, classifier, cubic
penalty), hand-computed constants, the choice of softmax or per-label sigmoid, and its parameters."""
from __future__ import annotations

import math

import pytest
import torch

from hashbench.errors import HashbenchError
from hashbench.methods.greedyhash import GreedyHashLoss, cubic_penalty, straight_through_sign
from hashbench.registry import LOSSES, METHODS, build

# 5 items, 4 labels, 1-3 labels each
MULTI = torch.tensor([[1, 1, 0, 0], [1, 0, 0, 0], [0, 1, 1, 0], [0, 0, 0, 1], [1, 1, 1, 0]], dtype=torch.float64)
SINGLE = torch.eye(4, dtype=torch.float64)[[0, 2, 1, 3, 2]]


def _h(seed=0, b=5, k=6):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(b, k, generator=g, dtype=torch.float64) * 1.3).requires_grad_()


def _loss(labels, **kwargs):
    torch.manual_seed(3)
    loss = build(LOSSES, dict(type="greedyhash", **kwargs))
    loss.begin(labels.float(), 6)
    loss.double()
    return loss


def _oracle(h, y, w, alpha, softmax):
    """The paper's loss written out: b = sgn(h) as constants, CE of W^T b, alpha * mean ||h|-1|^3.

    Returns the value and its gradient with respect to h by the straight-through rule
    (dL/dh = dCE/db + alpha dP/dh) and with respect to W, built from plain loops."""
    n, k = h.shape
    c = w.shape[0]
    b = torch.tensor([[1.0 if float(h.detach()[i, j]) > 0 else -1.0 for j in range(k)] for i in range(n)],
                     dtype=torch.float64, requires_grad=True)
    w = w.detach().clone().requires_grad_()
    ce = torch.zeros((), dtype=torch.float64)
    for i in range(n):
        s = [sum(w[a, j] * b[i, j] for j in range(k)) for a in range(c)]
        if softmax:
            log_norm = torch.log(sum(torch.exp(x) for x in s))
            ce = ce - sum(y[i, a] * (s[a] - log_norm) for a in range(c))
        else:
            for a in range(c):
                p = 1 / (1 + torch.exp(-s[a]))
                ce = ce - (y[i, a] * torch.log(p) + (1 - y[i, a]) * torch.log(1 - p))
    ce = ce / n
    hh = h.detach().clone().requires_grad_()
    penalty = sum(abs(abs(hh[i, j]) - 1) ** 3 for i in range(n) for j in range(k)) / (n * k)
    total = ce + alpha * penalty
    total.backward()
    return total.detach(), b.grad + hh.grad, w.grad


@pytest.mark.parametrize("labels, softmax", [(MULTI, False), (SINGLE, True)])
@pytest.mark.parametrize("alpha", [0.1, 2.0])
def test_value_and_gradients_match_the_formula(labels, softmax, alpha):
    loss = _loss(labels, alpha=alpha)
    assert loss.mode == ("softmax" if softmax else "sigmoid")
    h = _h()
    out = loss(h, labels)
    out["loss"].backward()
    value, grad_h, grad_w = _oracle(h, labels, loss.classifier.weight, alpha, softmax)
    torch.testing.assert_close(out["loss"].detach(), value, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(h.grad, grad_h, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(loss.classifier.weight.grad, grad_w, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(out["classification"] + alpha * out["penalty"], out["loss"].detach())


def test_straight_through_sign_is_sign_forward_and_identity_backward():
    h = torch.tensor([[-2.0, -1e-9, 0.0, 1e-9, 3.0]], requires_grad=True)
    b = straight_through_sign(h)
    assert b.tolist() == [[-1.0, -1.0, -1.0, 1.0, 1.0]]  # 0 goes to -1: the encoding threshold z > 0
    g = torch.tensor([[0.5, -1.0, 2.0, 3.0, -4.0]])
    (b * g).sum().backward()
    assert torch.equal(h.grad, g)


def test_cubic_penalty_by_hand():
    # | |h| - 1 |^3 for h = 0, 0.5, 2, -3, 1, -1: 1, 0.125, 1, 8, 0, 0; mean over the 6 entries
    h = torch.tensor([[0.0, 0.5, 2.0], [-3.0, 1.0, -1.0]], dtype=torch.float64)
    assert float(cubic_penalty(h)) == pytest.approx((1 + 0.125 + 1 + 8) / 6, abs=1e-15)


def test_zero_classifier_gives_log_two_per_label_and_log_c_for_softmax():
    # W = 0: every logit 0. Per-label sigmoid: C log 2 per item (summed over labels); softmax: log C.
    h = torch.tensor([[1.0, -1.0, 1.0, 1.0, -1.0, -1.0]] * 5, dtype=torch.float64)  # on ±1: no penalty
    for labels, expected in ((MULTI, 4 * math.log(2)), (SINGLE, math.log(4))):
        loss = _loss(labels)
        torch.nn.init.zeros_(loss.classifier.weight)
        out = loss(h, labels)
        assert float(out["penalty"]) == 0.0
        assert float(out["loss"].detach()) == pytest.approx(expected, abs=1e-12)


def test_penalty_gradient_reaches_h_directly():
    # with W = 0 the classification gradient is 0 and only alpha * dP/dh = alpha * 3 (|h|-1)^2 sgn(h) / (BK) is left
    loss = _loss(MULTI, alpha=0.1)
    torch.nn.init.zeros_(loss.classifier.weight)
    h = torch.full((5, 6), 2.0, dtype=torch.float64, requires_grad=True)
    loss(h, MULTI)["loss"].backward()
    torch.testing.assert_close(h.grad, torch.full((5, 6), 0.1 * 3 / 30, dtype=torch.float64))


def test_classification_follows_the_training_labels_and_softmax_refuses_multi_label():
    assert _loss(SINGLE).mode == "softmax" and _loss(MULTI).mode == "sigmoid"
    assert _loss(SINGLE, classification="sigmoid").mode == "sigmoid"
    with pytest.raises(HashbenchError, match="classification=softmax needs exactly one label") as e:
        _loss(MULTI, classification="softmax")
    assert "\n" not in str(e.value)


def test_classifier_is_a_bias_free_method_parameter_sized_in_begin():
    method = build(METHODS, dict(type="greedyhash", n_bits=12))

    class Split:
        labels = MULTI.numpy()

    method.begin(Split())
    params = dict(method.named_parameters())
    assert list(params) == ["loss.classifier.weight"] and params["loss.classifier.weight"].shape == (4, 12)
    with pytest.raises(HashbenchError, match="call it first"):
        GreedyHashLoss()(torch.zeros(2, 12), torch.ones(2, 4))


def test_defaults():
    method = build(METHODS, dict(type="greedyhash", n_bits=16))
    assert method.loss.alpha == 0.1 and method.loss.classification == "auto"
    assert method.relaxation == "identity" and method.bypass is False and method.lr_mult == {}
    assert method.family == "pointwise" and method.code_norm is None
    z = torch.randn(3, 16)
    assert torch.equal(method.relax(z, 0.5), z)


@pytest.mark.parametrize("params, message", [
    (dict(alpha=-0.1), "alpha must be a number >= 0; got -0.1"),
    (dict(classification="hinge"), "classification must be one of auto, softmax, sigmoid; got 'hinge'"),
])
def test_invalid_parameters_are_refused_in_one_line(params, message):
    for make in (lambda: build(METHODS, dict(type="greedyhash", n_bits=8, **params)),
                 lambda: GreedyHashLoss(**params)):
        with pytest.raises(HashbenchError, match=message) as e:
            make()
        assert "\n" not in str(e.value)
