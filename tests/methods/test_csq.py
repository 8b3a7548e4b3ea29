"""CSQ: Hadamard and random hash centres, the multi-label centre rule with its tie vector, the loss
against a literal transcription of its formula, hand-computed constants, and its parameters."""
from __future__ import annotations

import logging
import math

import pytest
import torch

from hashbench.errors import HashbenchError
from hashbench.methods.csq import CSQLoss, hash_centres, pairwise_hamming, random_centres
from hashbench.registry import LOSSES, METHODS, build

# 5 items, 4 labels, 1-3 labels each
LABELS = torch.tensor([[1, 1, 0, 0], [1, 0, 0, 0], [0, 1, 1, 0], [0, 0, 0, 1], [1, 1, 1, 0]], dtype=torch.float64)


def _sylvester(k):
    """H_k by the recursion H_2n = [[H_n, H_n], [H_n, -H_n]], from H_1 = [1]."""
    h = [[1.0]]
    while len(h) < k:
        h = [row + row for row in h] + [row + [-x for x in row] for row in h]
    return torch.tensor(h)


def _loss(labels=LABELS, n_bits=8, seed=0, **kwargs):
    torch.manual_seed(seed)
    loss = build(LOSSES, dict(type="csq", **kwargs))
    loss.begin(labels.float(), n_bits)
    return loss.double()


@pytest.mark.parametrize("k, c", [(8, 8), (16, 10), (32, 10), (4, 3)])
def test_hadamard_centres_are_pairwise_at_half_the_code_length(k, c):
    centres = hash_centres(c, k)
    assert torch.equal(centres, _sylvester(k)[:c])  # the first C rows of H_K (C <= K)
    d = pairwise_hamming(centres)
    assert torch.equal(d, (k / 2) * (1 - torch.eye(c)))


def test_hadamard_centres_beyond_k_rows_come_from_minus_h():
    k, c = 8, 13
    centres = hash_centres(c, k)
    h = _sylvester(k)
    assert torch.equal(centres, torch.cat([h, -h])[:c])
    d = pairwise_hamming(centres)
    for i in range(c):
        for j in range(c):
            want = 0 if i == j else (k if abs(i - j) == k else k / 2)  # a row and its own negation: K apart
            assert float(d[i, j]) == want


def test_first_row_skips_the_all_ones_row():
    centres = hash_centres(5, 8, first_row=1)
    assert torch.equal(centres, _sylvester(8)[1:6])
    assert torch.equal((centres < 0).sum(dim=1), torch.full((5,), 4))  # every centre balanced


@pytest.mark.parametrize("k, c, kind", [(8, 16, "hadamard"), (8, 17, "random"), (48, 10, "random"),
                                        (12, 3, "random"), (64, 10, "hadamard")])
def test_auto_uses_hadamard_exactly_when_k_is_a_power_of_two_and_2k_covers_the_classes(k, c, kind):
    torch.manual_seed(0)
    centres = hash_centres(c, k, min_distance=0, tries=1)  # only which kind is chosen matters here
    stacked = torch.cat([_sylvester(k), -_sylvester(k)]) if (k & (k - 1)) == 0 else None
    is_hadamard = stacked is not None and c <= 2 * k and torch.equal(centres, stacked[:c])
    assert is_hadamard == (kind == "hadamard")


@pytest.mark.parametrize("k, c", [(48, 10), (12, 6), (32, 40)])
def test_random_balanced_centres_meet_the_distance_requirements(k, c):
    torch.manual_seed(1)
    centres = random_centres(c, k)
    assert set(centres.unique().tolist()) <= {-1.0, 1.0}
    assert torch.equal((centres < 0).sum(dim=1), torch.full((c,), k // 2))  # exactly floor(K/2) bits -1
    d = pairwise_hamming(centres)[torch.triu(torch.ones(c, c, dtype=torch.bool), diagonal=1)]
    assert float(d.min()) >= k // 4 + 1 and float(d.mean()) >= k / 2
    torch.manual_seed(1)
    assert torch.equal(random_centres(c, k), centres)  # torch's global RNG: the same on every process


def test_random_bernoulli_bits_and_an_unreachable_minimum_keeps_the_best_draw(caplog):
    torch.manual_seed(2)
    centres = random_centres(6, 10, bits="bernoulli", min_distance=3)
    assert set(centres.unique().tolist()) <= {-1.0, 1.0}
    counts = (centres < 0).sum(dim=1)
    torch.manual_seed(2)
    with caplog.at_level(logging.WARNING, logger="hashbench.methods.csq"):
        best = random_centres(6, 10, min_distance=11, tries=5)  # more than K: no draw can pass
    assert "keeping the best" in caplog.text and best.shape == (6, 10)
    assert counts.numel() == 6


def test_multi_label_centre_is_the_sign_of_the_sum_with_ties_from_the_tie_vector():
    loss = _loss(torch.eye(3), n_bits=4)
    loss.centres = torch.tensor([[1.0, 1.0, 1.0, 1.0], [1.0, -1.0, 1.0, -1.0], [1.0, 1.0, -1.0, -1.0]])
    loss.tie_bits = torch.tensor([-1.0, 1.0, -1.0, -1.0])
    y = torch.tensor([[1.0, 1.0, 0.0],   # sums 2, 0, 2, 0 -> 1, tie, 1, tie
                      [1.0, 1.0, 1.0],   # sums 3, 1, 1, -1
                      [0.0, 1.0, 0.0],   # one label: its centre
                      [0.0, 0.0, 0.0],   # no label: the tie vector
                      [0.0, 1.0, 1.0]])  # sums 2, 0, 0, -2
    want = torch.tensor([[1.0, 1.0, 1.0, -1.0], [1.0, 1.0, 1.0, -1.0], [1.0, -1.0, 1.0, -1.0],
                         [-1.0, 1.0, -1.0, -1.0], [1.0, 1.0, -1.0, -1.0]])
    assert torch.equal(loss.item_centres(y), want)


def _oracle(h, y, centres, tie, weight, quantization):
    """(1/BK) sum_{i,k} -[t log p + (1-t) log(1-p)] + weight * (1/BK) sum_{i,k} q(h), written out."""
    n, k = h.shape
    total = torch.zeros((), dtype=torch.float64)
    for i in range(n):
        for j in range(k):
            s = sum(float(y[i, c]) * float(centres[c, j]) for c in range(centres.shape[0]))
            centre = 1.0 if s > 0 else (-1.0 if s < 0 else float(tie[j]))
            p, t = (h[i, j] + 1) / 2, (centre + 1) / 2
            total = total - (t * torch.log(p) + (1 - t) * torch.log(1 - p))
            x = abs(h[i, j]) - 1
            total = total + weight * (torch.log(torch.cosh(x)) if quantization == "logcosh" else x ** 2)
    return total / (n * k)


@pytest.mark.parametrize("quantization", ["logcosh", "square"])
@pytest.mark.parametrize("k", [8, 6])  # Hadamard centres; random ones (6 is not a power of 2)
def test_value_and_gradient_match_the_formula(quantization, k):
    weight = 0.7  # large enough for the quantisation term to show in the gradient
    loss = _loss(n_bits=k, quant_weight=weight, quantization=quantization)
    g = torch.Generator().manual_seed(5)
    z = torch.randn(5, k, generator=g, dtype=torch.float64) * 1.5
    h1, h2 = torch.tanh(z).requires_grad_(), torch.tanh(z).requires_grad_()
    out = loss(h1, LABELS)
    out["loss"].backward()
    ref = _oracle(h2, LABELS, loss.centres, loss.tie_bits, weight, quantization)
    ref.backward()
    torch.testing.assert_close(out["loss"], ref, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(h1.grad, h2.grad, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(out["central"] + weight * out["quantization"], out["loss"].detach())


def test_codes_at_zero_by_hand():
    # h = 0: p = 1/2 for every bit, BCE = log 2 whatever the centre; q = log cosh(-1) or (-1)^2 = 1
    h = torch.zeros(5, 8, dtype=torch.float64)
    for quantization, q in (("logcosh", math.log(math.cosh(1.0))), ("square", 1.0)):
        out = _loss(quantization=quantization)(h, LABELS)
        assert float(out["central"]) == pytest.approx(math.log(2), abs=1e-15)
        assert float(out["quantization"]) == pytest.approx(q, abs=1e-15)
        assert float(out["loss"]) == pytest.approx(math.log(2) + 1e-4 * q, abs=1e-15)


def test_codes_on_their_centres_cost_only_the_clamped_nothing():
    # h = the item's centre: the cross-entropy and the quantisation term are both 0
    loss = _loss()
    h = loss.item_centres(LABELS).clone().requires_grad_()
    out = loss(h, LABELS)
    assert float(out["loss"].detach()) == 0.0
    out["loss"].backward()
    assert torch.isfinite(h.grad).all()


def test_centres_and_tie_vector_are_buffers_in_the_state():
    method = build(METHODS, dict(type="csq", n_bits=16))

    class Split:
        labels = LABELS.numpy()

    torch.manual_seed(0)
    method.begin(Split())
    state = method.state_dict()
    assert set(state) == {"loss.centres", "loss.tie_bits"} and not list(method.parameters())
    assert state["loss.centres"].shape == (4, 16) and state["loss.tie_bits"].shape == (16,)
    with pytest.raises(HashbenchError, match="call it first"):
        CSQLoss()(torch.zeros(2, 16), torch.ones(2, 4))


def test_defaults():
    method = build(METHODS, dict(type="csq", n_bits=32))
    loss = method.loss
    assert loss.quant_weight == 1e-4 and loss.quantization == "logcosh" and loss.centre_kind == "auto"
    assert loss.random_bits == "balanced" and loss.min_distance is None and loss.tries == 10000
    assert loss.first_row == 0
    assert method.relaxation == "tanh" and method.bypass is False and method.lr_mult == {"head.": 20.0}
    assert method.family == "pointwise" and method.code_norm is None


@pytest.mark.parametrize("params, message", [
    (dict(quant_weight=-1.0), "quant_weight must be a number >= 0; got -1.0"),
    (dict(quantization="abs"), "quantization must be one of logcosh, square; got 'abs'"),
    (dict(centres="orthogonal"), "centres must be one of auto, hadamard, random; got 'orthogonal'"),
    (dict(random_bits="gaussian"), "random_bits must be one of balanced, bernoulli; got 'gaussian'"),
    (dict(min_distance=-1), "min_distance must be an integer >= 0 or none; got -1"),
    (dict(tries=0), "tries must be an integer >= 1; got 0"),
    (dict(first_row=-2), "first_row must be an integer >= 0; got -2"),
])
def test_invalid_parameters_are_refused_in_one_line(params, message):
    for make in (lambda: build(METHODS, dict(type="csq", n_bits=8, **params)), lambda: CSQLoss(**params)):
        with pytest.raises(HashbenchError, match=message) as e:
            make()
        assert "\n" not in str(e.value)


def test_hadamard_centres_that_cannot_be_made_are_refused():
    with pytest.raises(HashbenchError, match="centres=hadamard needs n_bits a power of 2; got 12"):
        build(METHODS, dict(type="csq", n_bits=12, centres="hadamard"))
    with pytest.raises(HashbenchError, match=r"need K a power of 2 and first_row \+ C <= 2K; got K=8, C=17") as e:
        _loss(torch.ones(3, 17), n_bits=8, centres="hadamard")
    assert "\n" not in str(e.value)
