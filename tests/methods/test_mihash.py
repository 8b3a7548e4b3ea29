"""MIHash's loss against a plain loop over queries, bins and items (value and autograd gradient),
against a transcription of the released code's hand-derived gradient, on hand-computed cases
(perfect separation, no information), and its parameters and relaxation."""
from __future__ import annotations

import math

import pytest
import torch

from hashbench.errors import HashbenchError
from hashbench.methods.mihash import triangular_histogram
from hashbench.registry import LOSSES, METHODS, build

# 5 items, 4 labels, multi-label: item 3 shares a label with everyone but item 2
LABELS = torch.tensor([[1, 1, 0, 0], [1, 0, 0, 0], [0, 0, 1, 0], [1, 0, 0, 1], [0, 1, 1, 1]], dtype=torch.float64)


def _codes(seed=0, b=5, k=6):
    g = torch.Generator().manual_seed(seed)
    return torch.tanh(1.5 * torch.randn(b, k, generator=g, dtype=torch.float64)).requires_grad_()


def _entropy(ps):
    return -sum(p * torch.log2(p) for p in ps if float(p.detach()) > 0)


def _oracle(b, y, n_bins, reduction="mean"):
    """-sum_i I_i (or its mean), every histogram entry summed by hand."""
    n, k = b.shape
    delta = k / n_bins
    total = b.new_zeros(())
    for i in range(n):
        pos = [j for j in range(n) if j != i and float(y[i] @ y[j]) > 0]
        neg = [j for j in range(n) if j != i and float(y[i] @ y[j]) == 0]
        d = {j: (k - (b[i] * b[j]).sum()) / 2 for j in range(n) if j != i}
        kern = {(j, l): torch.clamp(1 - (d[j] - l * delta).abs() / delta, min=0)
                for j in d for l in range(n_bins + 1)}
        if not pos or not neg:
            continue  # I = 0
        p_pos = [sum(kern[j, l] for j in pos) / len(pos) for l in range(n_bins + 1)]
        p_neg = [sum(kern[j, l] for j in neg) / len(neg) for l in range(n_bins + 1)]
        p_all = [sum(kern[j, l] for j in d) / (n - 1) for l in range(n_bins + 1)]
        pr_pos, pr_neg = len(pos) / (n - 1), len(neg) / (n - 1)
        mi = _entropy(p_all) - pr_pos * _entropy(p_pos) - pr_neg * _entropy(p_neg)
        total = total - mi
    return total / n if reduction == "mean" else total


@pytest.mark.parametrize("n_bins, reduction", [(None, "mean"), (6, "mean"), (4, "sum"), (1, "mean")])
def test_value_and_gradient_match_the_formula(n_bins, reduction):
    loss = build(LOSSES, dict(type="mihash", n_bins=n_bins, reduction=reduction))
    b1, b2 = _codes(), _codes()
    out = loss(b1, LABELS)
    out["loss"].backward()
    ref = _oracle(b2, LABELS, 3 if n_bins is None else n_bins, reduction)  # default: K // 2 = 3
    ref.backward()
    torch.testing.assert_close(out["loss"], ref, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(b1.grad, b2.grad, rtol=1e-9, atol=1e-12)
    scale = 1 if reduction == "mean" else len(LABELS)
    torch.testing.assert_close(out["mi"] * scale, -out["loss"].detach())


def _released_gradient(b, y, n_bins):
    """d(-sum_i I_i)/db as the released mi_backward.m derives it (in words: chain rule through
    the normalised histograms, d(-p log2 p)/dp taken as -1 - log2 p, left-sided kernel
    derivative, d d_ij / d b_i = -b_j / 2, each distance entering the queries i and j)."""
    n, k = b.shape
    delta = k / n_bins
    centres = [l * delta for l in range(n_bins + 1)]
    b = b.detach()
    d = [[float((k - b[i] @ b[j]) / 2) for j in range(n)] for i in range(n)]

    def kern(x, c):
        return max(0.0, 1 - abs(x - c) / delta) if c - delta < x <= c + delta else 0.0

    def dkern(x, c):
        return (1.0 if c - delta < x <= c else -1.0 if c < x <= c + delta else 0.0) / delta

    def dent(p):  # the released derivative of -p log2 p
        return -1.0 - (math.log2(p) if p > 0 else 0.0)

    grad_d = [[0.0] * n for _ in range(n)]  # dL/d d_ij through query i
    for i in range(n):
        pos = [j for j in range(n) if j != i and float(y[i] @ y[j]) > 0]
        neg = [j for j in range(n) if j != i and float(y[i] @ y[j]) == 0]
        if not pos or not neg:
            continue
        pr_pos, pr_neg = len(pos) / (n - 1), len(neg) / (n - 1)
        for l, c in enumerate(centres):
            p_pos = sum(kern(d[i][j], c) for j in pos) / len(pos)
            p_neg = sum(kern(d[i][j], c) for j in neg) / len(neg)
            p_all = pr_pos * p_pos + pr_neg * p_neg
            # -MI = -(H(D) - pr+ H(D|+) - pr- H(D|-)): its derivatives w.r.t. p(D=l|+), p(D=l|-)
            g_pos = -(pr_pos * dent(p_all) - pr_pos * dent(p_pos))
            g_neg = -(pr_neg * dent(p_all) - pr_neg * dent(p_neg))
            for j in pos:
                grad_d[i][j] += g_pos * dkern(d[i][j], c) / len(pos)
            for j in neg:
                grad_d[i][j] += g_neg * dkern(d[i][j], c) / len(neg)
    grad = torch.zeros_like(b)
    for i in range(n):
        for j in range(n):
            if i != j:
                grad[i] += (grad_d[i][j] + grad_d[j][i]) * (-b[j] / 2)
    return grad


@pytest.mark.parametrize("n_bins", [3, 6])
def test_gradient_matches_the_released_derivation(n_bins):
    """The released backward differentiates p log2 p with +1 instead of +1/ln 2: the same
    gradient, because the kernels sum to one (sum_l dp_l = 0)."""
    loss = build(LOSSES, dict(type="mihash", n_bins=n_bins, reduction="sum"))
    b = _codes(3)
    loss(b, LABELS)["loss"].backward()
    torch.testing.assert_close(b.grad, _released_gradient(b, LABELS, n_bins), rtol=1e-9, atol=1e-12)


def test_perfect_separation_gives_the_entropy_of_the_prior_in_bits():
    # two groups of two identical codes, opposite between groups; labels by group: every query has
    # its one neighbour at distance 0 and two non-neighbours at distance K
    s = torch.tensor([1.0, -1.0, 1.0, 1.0, -1.0, 1.0], dtype=torch.float64)
    codes = torch.stack([s, s, -s, -s])
    labels = torch.tensor([[1, 0], [1, 0], [0, 1], [0, 1]], dtype=torch.float64)
    out = build(LOSSES, dict(type="mihash"))(codes, labels)
    h = -(1 / 3) * math.log2(1 / 3) - (2 / 3) * math.log2(2 / 3)  # H(C) = I(D; C) when D determines C
    assert float(out["mi"]) == pytest.approx(h, abs=1e-12)
    assert float(out["loss"]) == pytest.approx(-4 * h, abs=1e-12)  # summed over the 4 queries


def test_no_information_and_no_neighbours_give_zero():
    loss = build(LOSSES, dict(type="mihash"))
    same = torch.ones(5, 6, dtype=torch.float64, requires_grad=True)  # every distance 0: D says nothing
    out = loss(same, LABELS)
    assert float(out["loss"].detach()) == pytest.approx(0.0, abs=1e-12)
    codes = _codes(1)  # nobody shares a label: no query has a neighbour
    out = loss(codes, torch.eye(5, dtype=torch.float64))
    out["loss"].backward()
    assert out["loss"].item() == 0.0 and torch.count_nonzero(codes.grad) == 0


def test_histogram_counts_items_and_interpolates_between_centres():
    d = torch.tensor([[0.0, 1.0, 2.5, 6.0]], dtype=torch.float64, requires_grad=True)
    ones = torch.ones(1, 1, 4, dtype=torch.float64)
    h = triangular_histogram(d, ones, 3, 6)[0, 0]  # centres 0, 2, 4, 6
    torch.testing.assert_close(h, torch.tensor([1.5, 1.25, 0.25, 1.0], dtype=torch.float64))
    assert h.sum().item() == pytest.approx(4.0)  # the kernels sum to one on [0, K]
    h[1].backward()  # d=1 rises towards centre 2; d=2.5 falls away from it; d=0 (left end) rises
    torch.testing.assert_close(d.grad, torch.tensor([[0.5, 0.5, -0.5, 0.0]], dtype=torch.float64))


def test_defaults_and_relaxation():
    method = build(METHODS, dict(type="mihash", n_bits=32))
    assert method.family == "listwise" and method.loss.bins(32) == 16 and method.loss.bins(7) == 3
    assert method.relaxation == "sigmoid" and method.scale == 1.0 and method.bypass is False
    assert method.loss.reduction == "sum"
    z = torch.linspace(-3, 3, 32).repeat(2, 1)
    torch.testing.assert_close(method.relax(z, 0.5), 2 * torch.sigmoid(z) - 1)
    sharp = build(METHODS, dict(type="mihash", n_bits=32, scale=30.0, relaxation="tanh"))
    torch.testing.assert_close(sharp.relax(z, 0.5), torch.tanh(30 * z))


@pytest.mark.parametrize("params, match", [
    (dict(n_bins=0), "n_bins must be an integer >= 1"),
    (dict(scale=0.0), "scale must be a number > 0"),
    (dict(reduction="max"), "reduction must be one of sum, mean"),
    (dict(relaxation="identity"), "relaxation must be"),
])
def test_invalid_parameters_are_refused_in_one_line(params, match):
    with pytest.raises(HashbenchError, match=match) as built:
        build(METHODS, dict(type="mihash", n_bits=16, **params))
    assert "\n" not in str(built.value)
    from hashbench.methods.mihash import MIHash

    with pytest.raises(HashbenchError, match=match.split(" must")[0]) as direct:
        MIHash(16, **params)
    assert "\n" not in str(direct.value)
