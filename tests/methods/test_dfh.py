"""DFH against plain loops: the margin pair loss and quantisation (in-batch and against the bank of
the whole training set), the B-step with multi-label class weights, the C-step's coordinate descent
(never increases its objective, centres stay ±1, each row optimal, independent of batch order), the
constants and the refusals."""
from __future__ import annotations

import itertools
import math

import pytest
import torch

from hashbench.errors import HashbenchError
from hashbench.methods.dfh import centre_objective, class_weights, dcc_centres
from hashbench.registry import LOSSES, METHODS, build

LABELS = torch.tensor([[1, 1, 0, 0], [1, 0, 0, 0], [0, 1, 1, 0], [0, 0, 0, 1], [1, 0, 1, 1]], dtype=torch.float32)


def _codes(seed=0, b=5, k=6, scale=2.0):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(b, k, generator=g, dtype=torch.float64) * scale).requires_grad_()


def _centres(seed=0, c=4, k=6):
    g = torch.Generator().manual_seed(seed)
    return torch.where(torch.rand(c, k, generator=g) > 0.5, 1.0, -1.0).double()


def _sign(x):
    return 1.0 if x > 0 else -1.0


def _oracle(u, y, partners, partner_y, others, centres, margin, eta, mu):
    """Per anchor i: mean over its partners j of s log(1 + e^(m - O)) + (1 - s) log(1 + e^(m + O)),
    O = 1/2 u_i . v_j, plus eta * mean_k (b_ik - u_ik)^2 with b_i = sgn(u_i + mu * sum_c y_ic c_c / |y_i|);
    the mean over anchors."""
    n, k = u.shape
    total = u.new_zeros(())
    for i in range(n):
        js = others(i)
        for j in js:
            s = 1.0 if float(y[i] @ partner_y[j]) > 0 else 0.0
            o = 0.5 * sum(u[i, b] * partners[j, b] for b in range(k))
            total = total + (s * torch.log(1 + torch.exp(margin - o))
                             + (1 - s) * torch.log(1 + torch.exp(margin + o))) / len(js)
        count = float(y[i].sum())
        for b in range(k):
            pull = sum(float(y[i, c]) * float(centres[c, b]) for c in range(len(centres))) / count
            bit = _sign(float(u[i, b].detach()) + mu * pull)
            total = total + eta * (bit - u[i, b]) ** 2 / k
    return total / n


def _batch_loss(centres, **params):
    loss = build(LOSSES, dict(type="dfh", **params))
    loss.begin(LABELS, 6)
    loss.centres.copy_(centres)
    return loss


def test_in_batch_value_and_gradient_match_the_formula():
    centres = _centres()
    loss = _batch_loss(centres)  # margin 3, eta 0.5, mu 1
    u1, u2 = _codes(), _codes()
    out = loss(u1, LABELS)
    out["loss"].backward()
    ref = _oracle(u2, LABELS, u2, LABELS, lambda i: [j for j in range(5) if j != i], centres, 3.0, 0.5, 1.0)
    ref.backward()
    torch.testing.assert_close(out["loss"], ref, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(u1.grad, u2.grad, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(out["pairs"] + 0.5 * out["quantization"], out["loss"].detach())


def test_dataset_pairs_read_the_bank_and_leave_it_constant():
    """pairs="dataset": each batch item against every other training sample's stored output (no
    gradient into the bank), the batch's rows written first; the B-step uses the centres before the C-step."""
    n = len(LABELS)
    method = build(METHODS, dict(type="dfh", n_bits=6, mu=0.5))

    class _Split:
        labels = LABELS.numpy()

    method.begin(_Split())
    everyone = _codes(3).detach()
    method.compute_loss(everyone.clone(), LABELS, torch.arange(n))  # fills the bank
    centres = _centres(1)
    method.fisher.centres.copy_(centres)
    batch = torch.tensor([4, 1, 3])
    u1 = (everyone[batch] + 0.1).requires_grad_()
    out = method.compute_loss(u1, LABELS[batch], batch)
    out["loss"].backward()
    bank = everyone.clone()
    bank[batch] = u1.detach()
    u2 = u1.detach().clone().requires_grad_()
    ref = _oracle(u2, LABELS[batch], bank, LABELS, lambda i: [j for j in range(n) if j != int(batch[i])],
                  centres, 3.0, 0.5, 0.5)
    ref.backward()
    torch.testing.assert_close(out["loss"], ref, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(u1.grad, u2.grad, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(method.loss.bank, bank)


def test_margin_and_constants_by_hand():
    """Orthogonal outputs (Omega = 0): every pair costs log(1 + e^m) = log(1 + e^3); outputs equal to
    their binary codes: no quantisation."""
    u = torch.tensor([[1.0, 1.0, 1.0, 1.0], [1.0, -1.0, 1.0, -1.0]], dtype=torch.float64)
    y = torch.tensor([[1.0, 0.0], [1.0, 1.0]])
    loss = build(LOSSES, dict(type="dfh"))
    loss.begin(y, 4)
    out = loss(u, y)
    assert float(out["pairs"]) == pytest.approx(math.log1p(math.exp(3)), rel=1e-12)
    assert float(out["quantization"]) == 0.0
    assert (loss.margin, loss.eta, loss.mu, loss.nu) == (3.0, 0.5, 1.0, 1.0)
    # m = 0 is DPSH's likelihood: log(1 + e^O) - s O
    flat = build(LOSSES, dict(type="dfh", margin=0.0))
    flat.begin(y, 4)
    v = torch.tensor([[1.5, 0, 0, 0], [1.0, 0, 0, 0]], dtype=torch.float64)  # Omega_01 = 0.75
    got = flat(v, y)["pairs"]
    assert float(got) == pytest.approx(math.log1p(math.exp(0.75)) - 0.75, rel=1e-12)


def test_b_step_pulls_towards_the_mean_of_the_items_class_centres():
    """Item with labels {0, 1}: b = sgn(u + mu (c_0 + c_1) / 2)."""
    loss = build(LOSSES, dict(type="dfh", mu=1.0))
    y = torch.tensor([[1.0, 1.0, 0.0]])
    loss.begin(y, 4)
    loss.centres.copy_(torch.tensor([[1.0, 1.0, -1.0, 1.0], [1.0, -1.0, -1.0, -1.0], [-1.0, -1.0, 1.0, 1.0]]))
    u = torch.tensor([[-0.9, 0.4, 0.9, -0.1]])
    # mean of the two centres: (1, 0, -1, 0) -> u + mean = (0.1, 0.4, -0.1, -0.1)
    assert torch.equal(loss.binary_codes(u, y), torch.tensor([[1.0, 1.0, -1.0, -1.0]]))
    torch.testing.assert_close(class_weights(torch.tensor([[1.0, 1.0, 0.0], [0.0, 0.0, 0.0]])),
                               torch.tensor([[0.5, 0.5, 0.0], [0.0, 0.0, 0.0]]))


def test_c_step_never_increases_its_objective_and_each_centre_is_optimal():
    g = torch.Generator().manual_seed(5)
    ybar = class_weights(LABELS).double()
    for trial in range(5):
        b = torch.where(torch.rand(5, 6, generator=g) > 0.5, 1.0, -1.0).double()
        centres = _centres(trial)
        before = centre_objective(ybar, b, centres, 1.0)
        new = dcc_centres(ybar, b, centres, 1.0)
        assert set(new.unique().tolist()) <= {-1.0, 1.0}
        assert centre_objective(ybar, b, new, 1.0) <= before + 1e-12
        # the last class was updated with all others final: its row is the best of all 2^K rows
        best = min(centre_objective(ybar, b, torch.cat([new[:-1], torch.tensor([row]).double()]), 1.0)
                   for row in itertools.product([-1.0, 1.0], repeat=6))
        assert float(centre_objective(ybar, b, new, 1.0)) == pytest.approx(float(best), abs=1e-12)


def test_c_step_matches_the_coordinate_update_by_hand():
    """One class, one item with b = (1, -1): c = sgn(q) = sgn(b) (no other centre); a second class
    with no item is pushed away from the first: sgn(-nu c_0)."""
    ybar = torch.tensor([[1.0, 0.0]], dtype=torch.float64)
    b = torch.tensor([[1.0, -1.0]], dtype=torch.float64)
    new = dcc_centres(ybar, b, torch.zeros(2, 2, dtype=torch.float64), 1.0)
    assert torch.equal(new, torch.tensor([[1.0, -1.0], [-1.0, 1.0]], dtype=torch.float64))


def test_c_step_does_not_depend_on_the_order_of_the_batch():
    """Label weights 1/3 and 1 make exact ties (e.g. three 1/3 votes against one 1), which float sums
    round to 0 or +-1e-16 depending on the order; a tie keeps the bit, so a permuted batch (another
    split over processes) gives the same centres. (Deciding ties by the rounded sign changes 61 bits
    over these 10 permutations.)"""
    g = torch.Generator().manual_seed(0)
    base = torch.tensor([[1, 1, 1, 0], [1, 1, 1, 0], [1, 1, 1, 0], [1, 0, 0, 0], [0, 1, 1, 1], [0, 1, 1, 1],
                         [0, 1, 1, 1], [0, 0, 0, 1]], dtype=torch.float32)
    labels = base.repeat(4, 1)
    b = torch.where(torch.rand(len(labels), 32, generator=g) > 0.5, 1.0, -1.0).double()
    ybar = class_weights(labels.double())
    start = torch.zeros(4, 32, dtype=torch.float64)
    first = dcc_centres(ybar, b, start, 1.0)
    for seed in range(10):
        perm = torch.randperm(len(labels), generator=torch.Generator().manual_seed(seed))
        assert torch.equal(dcc_centres(ybar[perm], b[perm], start, 1.0), first)
    # and a whole step (float32 outputs, as in training) updates the centres identically
    u = torch.randn(len(labels), 32, generator=g)
    a, c = build(LOSSES, dict(type="dfh")), build(LOSSES, dict(type="dfh"))
    a.begin(labels, 32)
    c.begin(labels, 32)
    perm = torch.randperm(len(labels), generator=g)
    out_a, out_c = a(u, labels), c(u[perm], labels[perm])
    assert torch.equal(a.centres, c.centres)
    torch.testing.assert_close(out_a["loss"], out_c["loss"])


def test_defaults():
    method = build(METHODS, dict(type="dfh", n_bits=16))
    assert method.family == "pairwise" and method.pairs == "dataset" and method.relaxation == "identity"
    assert method.bypass is False and method.lr_mult == {}
    assert method.fisher.similarity_name == "binary"
    assert build(METHODS, dict(type="dfh", n_bits=16, pairs="batch")).fisher is not None


def test_loss_needs_begin():
    with pytest.raises(HashbenchError, match="needs begin"):
        build(LOSSES, dict(type="dfh"))(torch.zeros(2, 4), torch.ones(2, 3))


@pytest.mark.parametrize("params, message", [
    (dict(margin=-1.0), "margin"),
    (dict(eta=-0.5), "eta"),
    (dict(mu=-1.0), "mu"),
    (dict(nu=-1.0), "nu"),
    (dict(pairs="all"), "pairs must be one of dataset, batch; got 'all'"),
    (dict(similarity="graded"), "graded"),
])
def test_invalid_values_are_refused_in_one_line(params, message):
    with pytest.raises(HashbenchError, match=message) as err:
        build(METHODS, dict(type="dfh", n_bits=8, **params))
    assert "\n" not in str(err.value)
