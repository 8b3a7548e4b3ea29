"""TALR's relaxed tie-aware AP and NDCG: against plain loops over queries, bins and items (value
and autograd gradient, both forms), against the literal tie-aware metrics (a sum over the ranks
of every tie group) and hashbench's own ``evaluate(..., ties="expected")`` on binary codes, the
series used at the removable singularities, and its parameters."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.special import polygamma

from hashbench.errors import HashbenchError
from hashbench.metrics import evaluate
from hashbench.methods.talr import _harmonic_gap, _tie_slope
from hashbench.registry import LOSSES, METHODS, build

# 6 items, 4 labels, multi-label (graded relevance up to 2); item 5 shares nothing with item 2
LABELS = torch.tensor([[1, 1, 0, 0], [1, 0, 0, 0], [0, 1, 1, 0], [0, 0, 0, 1], [1, 1, 1, 0], [0, 0, 1, 1]],
                      dtype=torch.float64)


def _codes(seed=0, b=6, k=6):
    g = torch.Generator().manual_seed(seed)
    return torch.tanh(1.5 * torch.randn(b, k, generator=g, dtype=torch.float64)).requires_grad_()


def _signs(seed, b, k):
    g = torch.Generator().manual_seed(seed)
    return torch.where(torch.rand(b, k, generator=g) > 0.5, 1.0, -1.0).double()


def _harmonic(x):  # H(x) = psi(x + 1) + Euler's gamma, for real x >= 0
    return torch.digamma(x + 1) + 0.5772156649015329


def _discount_sum(x):  # S(x) = sum_{t <= x} 1/log2(1 + t), linear between integers
    whole = int(math.floor(float(x.detach())))
    return sum(1 / math.log2(1 + t) for t in range(1, whole + 1)) + (x - whole) / math.log2(whole + 2)


def _counts(b, i, weights, n_bins):
    """[sum_j w_j delta_l(d_ij) for l in 0..L] for the given {j: weight}."""
    k = b.shape[1]
    delta = k / n_bins
    out = []
    for l in range(n_bins + 1):
        total = b.new_zeros(())
        for j, w in weights.items():
            d = (k - (b[i] * b[j]).sum()) / 2
            total = total + w * torch.clamp(1 - (d - l * delta).abs() / delta, min=0)
        out.append(total)
    return out


def _oracle(b, y, objective, form, n_bins):
    """sum_i (1 - metric_i), the metric written per bin from the paper's formulas."""
    n = len(b)
    total = b.new_zeros(())
    for i in range(n):
        others = [j for j in range(n) if j != i]
        if objective == "ap":
            rel = [j for j in others if float(y[i] @ y[j]) > 0]
            cp = _counts(b, i, {j: 1.0 for j in rel}, n_bins)
            c = _counts(b, i, {j: 1.0 for j in others}, n_bins)
            value, before, before_pos = b.new_zeros(()), b.new_zeros(()), b.new_zeros(())
            for l in range(n_bins + 1):
                if float(c[l].detach()) > 0:
                    if form == "exact":  # (n+/n) [(P + 1) h1 + (n+ - 1)/(n - 1) h2]
                        h1 = _harmonic(before + c[l]) - _harmonic(before)
                        h2 = c[l] - (before + 1) * h1
                        value = value + cp[l] / c[l] * ((before_pos + 1) * h1 + (cp[l] - 1) / (c[l] - 1) * h2)
                    else:  # n+ (P + N+ + 1) / (s + N + 1)
                        value = value + cp[l] * (2 * before_pos + cp[l] + 1) / (2 * before + c[l] + 1)
                before, before_pos = before + c[l], before_pos + cp[l]
            metric = value / len(rel) if rel else 0.0
        else:
            gains = {j: 2.0 ** float(y[i] @ y[j]) - 1 for j in others}
            c = _counts(b, i, {j: 1.0 for j in others}, n_bins)
            g = _counts(b, i, gains, n_bins)
            dcg, before = b.new_zeros(()), b.new_zeros(())
            for l in range(n_bins + 1):
                if float(c[l].detach()) > 0:
                    if form == "exact":  # (G / n) (S(N) - S(s))
                        dcg = dcg + g[l] / c[l] * (_discount_sum(before + c[l]) - _discount_sum(before))
                    else:  # G / log2(1 + middle rank)
                        dcg = dcg + g[l] / torch.log2(before + (c[l] + 1) / 2 + 1)
                before = before + c[l]
            ideal = sum(v / math.log2(t + 2) for t, v in enumerate(sorted(gains.values(), reverse=True)))
            metric = dcg / ideal if ideal > 0 else 0.0
        total = total + 1 - metric
    return total


@pytest.mark.parametrize("objective", ["ap", "ndcg"])
@pytest.mark.parametrize("form, n_bins", [("exact", None), ("exact", 3), ("simplified", None), ("simplified", 4)])
def test_value_and_gradient_match_the_formula(objective, form, n_bins):
    loss = build(LOSSES, dict(type="talr", objective=objective, form=form, n_bins=n_bins))
    b1, b2 = _codes(), _codes()
    out = loss(b1, LABELS)
    out["loss"].backward()
    ref = _oracle(b2, LABELS, objective, form, 6 if n_bins is None else n_bins)  # default: K bins
    ref.backward()
    torch.testing.assert_close(out["loss"], ref, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(b1.grad, b2.grad, rtol=1e-8, atol=1e-11)
    torch.testing.assert_close(out[objective], 1 - out["loss"].detach() / len(LABELS))


def test_mean_reduction_is_the_batch_mean():
    b = _codes(2).detach()
    mean = build(LOSSES, dict(type="talr", reduction="mean"))(b, LABELS)
    total = build(LOSSES, dict(type="talr"))(b, LABELS)["loss"]
    torch.testing.assert_close(total, 6 * mean["loss"])
    torch.testing.assert_close(mean["loss"], 1 - mean["ap"])


def _literal(codes, y, objective):
    """The tie-aware metric of every query, from its integer tie groups, rank by rank."""
    n, k = codes.shape
    out = []
    for i in range(n):
        others = [j for j in range(n) if j != i]
        d = {j: int(round(float((k - codes[i] @ codes[j]) / 2))) for j in others}
        r = {j: float(y[i] @ y[j]) for j in others}
        value, before, before_pos = 0.0, 0, 0
        for dist in range(k + 1):
            group = [j for j in others if d[j] == dist]
            size = len(group)
            if objective == "ap":
                hits = sum(r[j] > 0 for j in group)
                for t in range(1, size + 1):  # expected precision at each of the group's ranks
                    tie = (hits - 1) / (size - 1) if size > 1 else 0.0
                    value += hits / size * (before_pos + 1 + (t - 1) * tie) / (before + t)
                before_pos += hits
            else:
                mean_gain = sum(2 ** r[j] - 1 for j in group) / size if size else 0.0
                value += sum(mean_gain / math.log2(1 + before + t) for t in range(1, size + 1))
            before += size
        if objective == "ap":
            relevant = sum(v > 0 for v in r.values())
            out.append(value / relevant if relevant else 0.0)
        else:
            ideal = sum((2 ** v - 1) / math.log2(t + 2) for t, v in enumerate(sorted(r.values(), reverse=True)))
            out.append(value / ideal if ideal else 0.0)
    return np.array(out)


def _hashbench(codes, y, objective):
    """hashbench's tie-aware metric of each item as a query against the others."""
    n = len(codes)
    name = "map" if objective == "ap" else f"ndcg@{n - 1}"
    codes, y = codes.numpy(), y.numpy().astype(np.int64)
    return np.array([evaluate(codes[i:i + 1], np.delete(codes, i, 0), y[i:i + 1], np.delete(y, i, 0),
                              metrics=[name], ties="expected")[name] for i in range(n)])


@pytest.mark.parametrize("objective", ["ap", "ndcg"])
def test_binary_codes_give_exactly_the_tie_aware_metric(objective):
    """±1 codes, one bin per distance (kernel width 1): the relaxed counts are the tie groups'
    counts and the surrogate is the tie-aware metric — the literal sum over ranks and hashbench's."""
    g = torch.Generator().manual_seed(5)
    labels = (torch.rand(12, 4, generator=g) < 0.35).double()
    labels[torch.arange(12), torch.randint(0, 4, (12,), generator=g)] = 1
    labels[0] = torch.tensor([0, 0, 0, 1.0])  # (likely) a query with a single relevant item
    codes = _signs(7, 12, 5)  # 5 bits, 11 items: many ties, groups of size 1 and 0 too
    loss = build(LOSSES, dict(type="talr", objective=objective))
    surrogate = loss.metric(codes, labels).numpy()
    np.testing.assert_allclose(surrogate, _literal(codes, labels, objective), rtol=1e-12, atol=1e-13)
    np.testing.assert_allclose(surrogate, _hashbench(codes, labels, objective), rtol=1e-12, atol=1e-13)
    batch = loss(codes, labels)[objective]
    assert float(batch) == pytest.approx(_hashbench(codes, labels, objective).mean(), abs=1e-12)
    simplified = build(LOSSES, dict(type="talr", objective=objective, form="simplified")).metric(codes, labels)
    assert np.abs(simplified.numpy() - surrogate).max() > 1e-3  # an approximation, not the metric


@pytest.mark.parametrize("objective", ["ap", "ndcg"])
def test_near_binary_codes_approach_the_tie_aware_metric(objective):
    signs = _signs(11, 10, 8)
    labels = LABELS[torch.arange(10) % 6]
    exact = _hashbench(signs, labels, objective).mean()
    loss = build(LOSSES, dict(type="talr", objective=objective))
    errors = [abs(float(loss(torch.tanh(a * signs), labels)[objective]) - exact) for a in (1.0, 2.0, 4.0, 50.0)]
    assert errors[0] > errors[1] > errors[2] and errors[3] < 1e-12


def test_series_at_the_removable_singularities():
    """A = (H(s+n) - H(s))/n near n = 0 and B = (1 - (s+1) A)/(n-1) near n = 1 switch to their
    Taylor series below 1e-4: equal there to the closed forms (up to their cancellation error)
    and, at n = 0 and n = 1, to the limits psi'(s+1) and 1 - (s+1) psi'(s+2) (scipy's)."""
    s = torch.tensor([0.0, 0.3, 4.0, 17.5], dtype=torch.float64)
    a = s.numpy() + 1
    torch.testing.assert_close(_harmonic_gap(s, torch.zeros_like(s)), torch.from_numpy(polygamma(1, a)),
                               rtol=1e-14, atol=0)
    n1 = torch.ones_like(s)
    torch.testing.assert_close(_tie_slope(s, n1, _harmonic_gap(s, n1)),
                               torch.from_numpy(1 - a * polygamma(1, a + 1)), rtol=0, atol=1e-14)
    for eps in (0.5e-4, 0.999e-4):
        n = torch.full_like(s, eps)
        closed = (torch.digamma(s + 1 + n) - torch.digamma(s + 1)) / n
        # the closed form loses ~1e-16 * psi(s+1) / (n psi'(s+1)) to cancellation: ~3e-10 at s = 17.5
        torch.testing.assert_close(_harmonic_gap(s, n), closed, rtol=1e-9, atol=0)
    for u in (-0.999e-4, -0.5e-4, 0.5e-4, 0.999e-4):
        n = torch.full_like(s, 1 + u)
        closed = (1 - (s + 1) * (torch.digamma(s + 1 + n) - torch.digamma(s + 1)) / n) / u
        torch.testing.assert_close(_tie_slope(s, n, _harmonic_gap(s, n)), closed, rtol=0, atol=1e-10)


def test_gradients_stay_finite_on_binary_codes_and_empty_bins():
    for objective in ("ap", "ndcg"):
        codes = _signs(3, 6, 8).requires_grad_()  # counts exactly 0 and 1 in many bins
        out = build(LOSSES, dict(type="talr", objective=objective))(codes, LABELS)
        out["loss"].backward()
        assert torch.isfinite(out["loss"]) and torch.isfinite(codes.grad).all() and codes.grad.abs().sum() > 0


def test_relevance_scale_divides_by_the_batch_maximum():
    b = _codes(4).detach()
    plain = build(LOSSES, dict(type="talr", objective="ndcg"))
    scaled = build(LOSSES, dict(type="talr", objective="ndcg", relevance_scale="batch_max"))
    # the largest shared count is 3 (item 4 with itself): relevance r / 3, gains 2^(r/3) - 1
    assert not torch.allclose(scaled.metric(b, LABELS), plain.metric(b, LABELS))
    single = torch.eye(4, dtype=torch.float64)[[0, 0, 1, 2, 1, 3]]  # single-label: r in {0, 1}, max 1
    torch.testing.assert_close(scaled.metric(b, single), plain.metric(b, single))


def test_defaults_and_relaxation():
    method = build(METHODS, dict(type="talr", n_bits=32))
    loss = method.loss
    assert method.family == "listwise" and loss.bins(32) == 32
    assert (loss.objective, loss.form, loss.relevance_scale, loss.reduction) == ("ap", "exact", "count", "sum")
    assert method.relaxation == "sigmoid" and method.scale == 1.0 and method.bypass is False
    z = torch.linspace(-3, 3, 32).repeat(2, 1)
    torch.testing.assert_close(method.relax(z, 0.0), 2 * torch.sigmoid(z) - 1)  # the code's tanh(z / 2)
    torch.testing.assert_close(method.relax(z, 0.0), torch.tanh(z / 2))
    tanh = build(METHODS, dict(type="talr", n_bits=32, relaxation="tanh", scale=2.0))
    torch.testing.assert_close(tanh.relax(z, 1.0), torch.tanh(2 * z))


@pytest.mark.parametrize("params, match", [
    (dict(objective="map"), "objective must be one of ap, ndcg"),
    (dict(form="original"), "form must be one of exact, simplified"),
    (dict(n_bins=0), "n_bins must be an integer >= 1"),
    (dict(relevance_scale="max"), "relevance_scale must be one of count, batch_max"),
    (dict(scale=-1.0), "scale must be a number > 0"),
    (dict(relaxation="identity"), "relaxation must be"),
])
def test_invalid_parameters_are_refused_in_one_line(params, match):
    with pytest.raises(HashbenchError, match=match) as built:
        build(METHODS, dict(type="talr", n_bits=16, **params))
    assert "\n" not in str(built.value)
    from hashbench.methods.talr import TALR

    with pytest.raises(HashbenchError, match=match.split(" must")[0]) as direct:
        TALR(16, **params)
    assert "\n" not in str(direct.value)
