"""DPN's polarisation loss against a plain loop over items, labels and bits; its target codes."""
from __future__ import annotations

import pytest
import torch

from hashbench.errors import HashbenchError
from hashbench.methods.dpn import DPNLoss, class_codewords, maxhd_codes
from hashbench.registry import LOSSES, METHODS, build

# 5 items x 4 labels, multi-label (item 4 carries three labels)
LABELS = torch.tensor([[1, 0, 0, 0], [1, 1, 0, 0], [0, 0, 1, 0], [0, 1, 0, 1], [1, 0, 1, 1]], dtype=torch.float64)
# 4 classes x 6 bits; classes 0 and 1 agree on bits 0, 3; 1 and 3 disagree everywhere except bit 5
TARGETS = torch.tensor([[1, 1, -1, 1, -1, 1],
                        [1, -1, 1, 1, 1, -1],
                        [-1, 1, 1, -1, 1, 1],
                        [-1, 1, -1, -1, -1, -1]], dtype=torch.float64)
TIE = torch.tensor([1, -1, -1, 1, 1, -1], dtype=torch.float64)


def _codes(seed=0, b=5, k=6):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(b, k, generator=g, dtype=torch.float64) * 1.3).requires_grad_()


def _loss(**kwargs):
    loss = build(LOSSES, dict(type="dpn", **kwargs))
    loss.begin(LABELS, 6)
    loss.codewords = TARGETS.clone()
    if hasattr(loss, "tie_break"):
        loss.tie_break = TIE.clone()
    return loss


def _oracle(v, y, t, m, reg, combined=False):
    """mean_i [ sum over the item's labels c (or its one combined target) of sum_k max(m - v_ik t_ck, 0)
    + reg / K sum_k v_ik^2 ]."""
    n, k = v.shape
    total = v.new_zeros(())
    for i in range(n):
        labels = [c for c in range(y.shape[1]) if y[i, c] > 0]
        if combined:
            target = []
            for b in range(k):
                s = sum(float(t[c, b]) for c in labels)
                target.append(1.0 if s > 0 else -1.0 if s < 0 else float(TIE[b]))
            rows = [target]
        else:
            rows = [[float(t[c, b]) for b in range(k)] for c in labels]
        for row in rows:
            for b in range(k):
                total = total + torch.clamp(m - v[i, b] * row[b], min=0)
        for b in range(k):
            total = total + reg / k * v[i, b] ** 2
    return total / n


@pytest.mark.parametrize("targets", ["per_label", "combined"])
@pytest.mark.parametrize("margin, reg", [(1.0, 0.0), (0.5, 0.1)])
def test_value_and_gradient_match_the_formula(targets, margin, reg):
    loss = _loss(margin=margin, reg=reg, targets=targets)
    v1, v2 = _codes(), _codes()
    out = loss(v1, LABELS)
    out["loss"].backward()
    ref = _oracle(v2, LABELS, TARGETS, margin, reg, combined=targets == "combined")
    ref.backward()
    torch.testing.assert_close(out["loss"], ref, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(v1.grad, v2.grad, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(out["polarization"] + reg * out["regularizer"], out["loss"].detach())


def test_hand_computed_cases_pin_margin_and_sums():
    loss = _loss()  # defaults: m = 1, per-label, sum over bits
    assert loss.margin == 1.0 and loss.reg == 0.0 and loss.targets == "per_label"
    # outputs exactly on the target codes: every hinge 1 - 1 = 0
    single = LABELS[[0, 2]]
    on_target = TARGETS[[0, 2]].clone()
    assert float(loss(on_target, single)["loss"]) == 0.0
    # outputs at zero: each label costs m per bit, K = 6; items carry 1, 2, 1, 2, 3 labels -> mean 9/5 * 6
    zero = torch.zeros(5, 6, dtype=torch.float64)
    assert float(loss(zero, LABELS)["loss"]) == pytest.approx(6 * 9 / 5)
    # one bit half-way on the wrong side: 1 - (-0.5) = 1.5 on that bit only
    v = TARGETS[[0]].clone()
    v[0, 2] = 0.5  # target -1
    assert float(loss(v, LABELS[[0]])["loss"]) == pytest.approx(1.5)
    # beyond the margin on the right side costs nothing (hinge, not a pull towards ±1)
    assert float(loss(3 * TARGETS[[0]], LABELS[[0]])["loss"]) == 0.0
    assert float(_loss(reduction="sum")(zero, LABELS)["loss"]) == pytest.approx(6 * 9)


def test_combined_targets_are_the_sign_of_the_label_sum_with_ties_broken():
    loss = _loss(targets="combined")
    t = loss.item_targets(LABELS)
    # item 1: classes 0 + 1 = [2, 0, 0, 2, 0, 0] -> [+, r, r, +, r, r]
    assert t[1].tolist() == [1, -1, -1, 1, 1, -1]
    # item 4: classes 0 + 2 + 3 = [-1, 3, -1, -1, -1, 1]
    assert t[4].tolist() == [-1, 1, -1, -1, -1, 1]
    # single-label items: their class's code; then both multi-label modes agree
    assert torch.equal(t[[0, 2]], TARGETS[[0, 2]])
    v = _codes(3).detach()[[0, 2]]
    torch.testing.assert_close(loss(v, LABELS[[0, 2]])["loss"], _loss()(v, LABELS[[0, 2]])["loss"])


def test_begin_draws_reproducible_codes_from_the_global_rng():
    labels = torch.zeros(7, 5)
    a, b, c = build(LOSSES, dict(type="dpn")), build(LOSSES, dict(type="dpn")), build(LOSSES, dict(type="dpn"))
    torch.manual_seed(3)
    a.begin(labels, 32)
    torch.manual_seed(3)
    b.begin(labels, 32)
    torch.manual_seed(4)
    c.begin(labels, 32)
    assert a.codewords.shape == (5, 32) and set(a.codewords.unique().tolist()) == {-1.0, 1.0}
    assert torch.equal(a.codewords, b.codewords) and not torch.equal(a.codewords, c.codewords)
    assert "codewords" in a.state_dict()
    combined = build(LOSSES, dict(type="dpn", targets="combined"))
    combined.begin(labels, 32)
    assert set(combined.state_dict()) == {"codewords", "tie_break"}


def test_bernoulli_bits_are_balanced_and_maxhd_spreads_the_codes():
    torch.manual_seed(0)
    bits = class_codewords(200, 64, "bernoulli")
    assert abs(float(bits.mean())) < 0.02  # 12,800 fair ±1 bits: std of the mean ~0.009
    torch.manual_seed(0)
    codes = maxhd_codes(10, 32)
    assert codes.shape == (10, 32) and set(codes.unique().tolist()) == {-1.0, 1.0}
    d = 0.5 * (32 - codes @ codes.T)
    d.fill_diagonal_(32)
    # threshold d steps down from 0.61 K until 10 codes fit; K / 2 = 16 is the expected distance of
    # random codes, whose minimum over 45 pairs is typically ~10-12
    assert float(d.min()) >= 14
    with pytest.raises(HashbenchError, match="found no 64 codes of 4 bits"):
        maxhd_codes(64, 4, tries=50)


def test_forward_before_begin_and_wrong_shapes_are_refused():
    with pytest.raises(HashbenchError, match="begin"):
        build(LOSSES, dict(type="dpn"))(torch.zeros(2, 6), torch.ones(2, 4))
    with pytest.raises(HashbenchError, match="target codes are for 4 classes of 6 bits"):
        _loss()(torch.zeros(2, 6), torch.ones(2, 3))


@pytest.mark.parametrize("key, value, match", [
    ("margin", -1.0, "margin"), ("reg", -0.1, "reg"), ("targets", "argmax", "targets"),
    ("codebook", "hadamard", "codebook"), ("reduction", "max", "reduction")])
def test_invalid_values_are_refused_in_one_line(key, value, match):
    for make in (lambda: build(METHODS, dict(type="dpn", n_bits=8, **{key: value})),
                 lambda: DPNLoss(**{key: value})):
        with pytest.raises(HashbenchError, match=match) as err:
            make()
        assert "\n" not in str(err.value)


def test_method_defaults():
    method = build(METHODS, dict(type="dpn", n_bits=16))
    assert method.family == "pointwise" and method.code_norm is None
    assert method.relaxation == "identity" and method.bypass is False and method.lr_mult == {}
    assert method.loss.codebook == "bernoulli"
    z = torch.randn(3, 16)
    assert torch.equal(method.relax(z, 0.3), z)
