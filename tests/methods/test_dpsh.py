"""DPSH's loss against plain loops over the paper's pairs (in-batch and over the whole training set),
its bank of outputs, and its identity relaxation."""
from __future__ import annotations

import math

import pytest
import torch

from hashbench.errors import HashbenchError
from hashbench.methods.dpsh import DPSHLoss, TrainingSetBank
from hashbench.registry import LOSSES, METHODS, build

LABELS = torch.tensor([[1, 1, 0, 0], [1, 0, 0, 0], [0, 1, 1, 0], [0, 0, 0, 1], [1, 1, 1, 0], [0, 0, 1, 1]],
                      dtype=torch.float32)


def _codes(seed=0, b=6, k=8, scale=1.5):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(b, k, generator=g, dtype=torch.float64) * scale).requires_grad_()


def _oracle(u, y, eta, soft=False):
    """-sum_{i != j} (s_ij theta_ij - log(1 + e^theta_ij)) + eta sum_i ||sign(u_i) - u_i||^2, over B."""
    total = u.new_zeros(())
    n = len(u)
    for i in range(n):
        for j in range(n):
            if i == j:
                continue
            shared = float(y[i] @ y[j])
            s = shared / math.sqrt(float(y[i].sum()) * float(y[j].sum())) if soft else float(shared > 0)
            theta = 0.5 * (u[i] * u[j]).sum()
            total = total - (s * theta - torch.log(1 + torch.exp(theta)))
        for k in range(u.shape[1]):
            b = 1.0 if float(u[i, k].detach()) > 0 else -1.0
            total = total + eta * (b - u[i, k]) ** 2
    return total / n


@pytest.mark.parametrize("similarity", ["binary", "cosine"])
def test_value_and_gradient_match_the_formula(similarity):
    loss = build(LOSSES, dict(type="dpsh", eta=10.0, similarity=similarity))  # in-batch pairs
    u1, u2 = _codes(), _codes()
    out = loss(u1, LABELS)
    out["loss"].backward()
    ref = _oracle(u2, LABELS, 10.0, soft=similarity == "cosine")
    ref.backward()
    torch.testing.assert_close(out["loss"], ref, rtol=1e-6, atol=1e-8)
    torch.testing.assert_close(u1.grad, u2.grad, rtol=1e-6, atol=1e-8)
    torch.testing.assert_close(out["likelihood"] + 10.0 * out["quantization"], out["loss"].detach())


def test_sum_reduction_is_batch_size_times_mean():
    u = _codes(1)
    mean = build(LOSSES, dict(type="dpsh"))(u, LABELS)["loss"]
    total = build(LOSSES, dict(type="dpsh", reduction="sum"))(u, LABELS)["loss"]
    torch.testing.assert_close(total, 6 * mean)


def test_defaults_and_relaxation():
    method = build(METHODS, dict(type="dpsh", n_bits=8))
    assert isinstance(method.loss, TrainingSetBank) and method.pairs == "dataset"
    assert method.loss.inner.eta == 10.0 and method.loss.inner.similarity_name == "binary"
    assert isinstance(build(METHODS, dict(type="dpsh", n_bits=8, pairs="batch")).loss, DPSHLoss)
    assert method.relaxation == "identity" and method.bypass is False
    z = torch.randn(4, 8)
    assert torch.equal(method.relax(z, 0.5), z)
    tanh = build(METHODS, dict(type="dpsh", n_bits=8, relaxation="tanh"))
    torch.testing.assert_close(tanh.relax(z, 0.5), torch.tanh(z))


def test_graded_similarity_is_refused():
    with pytest.raises(HashbenchError, match="graded"):
        build(LOSSES, dict(type="dpsh", similarity="graded"))


def test_dataset_pairs_give_the_papers_gradient_over_the_whole_training_set():
    """With the bank holding every training output, the batch loss's gradient is the gradient of
    the paper's objective over all n training samples (the oracle above with B = n), / n."""
    n, k = len(LABELS), 8
    everyone = _codes(3, b=n, k=k)
    full = _oracle(everyone, LABELS, 10.0) * n  # the paper's L (the oracle averages over anchors)
    full.backward()
    loss = TrainingSetBank(build(LOSSES, dict(type="dpsh", eta=10.0)))
    loss.begin(LABELS, k)
    loss(everyone.detach().clone(), LABELS, torch.arange(n))  # fills the bank with every output
    batch = torch.tensor([4, 1, 3])
    u = everyone.detach()[batch].clone().requires_grad_()
    out = loss(u, LABELS[batch], batch)
    out["loss"].backward()
    torch.testing.assert_close(u.grad * n * len(batch), everyone.grad[batch], rtol=1e-6, atol=1e-8)
    assert torch.equal(loss.bank[batch], u.detach())  # the bank holds the latest outputs


def test_the_bank_needs_begin_and_rows():
    loss = TrainingSetBank(build(LOSSES, dict(type="dpsh")))
    with pytest.raises(HashbenchError, match="needs begin"):
        loss(_codes(), LABELS, torch.arange(6))
    loss.begin(LABELS, 8)
    with pytest.raises(HashbenchError, match="training-set rows"):
        loss(_codes(), LABELS)
    with pytest.raises(HashbenchError, match="pairs must be one of dataset, batch; got 'all'"):
        build(METHODS, dict(type="dpsh", n_bits=8, pairs="all"))
