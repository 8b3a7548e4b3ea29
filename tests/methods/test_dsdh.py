"""DSDH: the network's loss against a plain loop over the paper's objective (all training pairs),
the discrete steps' guarantees (W: closed-form minimiser; B: DCC never increases the objective and
stays in {-1, +1}), when B and W change (per epoch / per batch), and the refusals."""
from __future__ import annotations

import itertools

import pytest
import torch

from hashbench.errors import HashbenchError
from hashbench.methods.dpsh import TrainingSetBank
from hashbench.methods.dsdh import (DSDHLoss, b_objective, dcc, discrete_step, fit_classifier, update_bit,
                                    w_objective)
from hashbench.registry import METHODS, build

# 6 training items, 4 labels, multi-label (items 3 and 5 share label 3; item 3 shares nothing with 0-2)
LABELS = torch.tensor([[1, 1, 0, 0], [1, 0, 0, 0], [0, 1, 1, 0], [0, 0, 0, 1], [1, 1, 1, 0], [0, 0, 1, 1]],
                      dtype=torch.float32)
N, K = 6, 5


class _Split:
    def __init__(self, labels):
        self.labels = labels.numpy()

    def __len__(self):
        return len(self.labels)


def _rand(seed, *shape, scale=1.0):
    g = torch.Generator().manual_seed(seed)
    return scale * torch.randn(*shape, generator=g, dtype=torch.float64)


def _signs(seed, *shape):
    return torch.where(_rand(seed, *shape) > 0, 1.0, -1.0).double()


def _method(**params):
    method = build(METHODS, dict(type="dsdh", n_bits=K, **params))
    method.begin(_Split(LABELS))
    return method


def _paper_network_terms(u, y, b, eta):
    """The terms of the paper's L in the network outputs, over the whole training set:
    -sum_{i != j} (s_ij theta_ij - log(1 + e^theta_ij)) + eta sum_i ||b_i - u_i||^2, theta_ij = u_i.u_j / 2;
    returned separately (pairs, quantisation)."""
    n, k = u.shape
    pairs = u.new_zeros(())
    for i in range(n):
        for j in range(n):
            if i != j:
                s = 1.0 if float(y[i] @ y[j]) > 0 else 0.0
                theta = 0.5 * sum(u[i, d] * u[j, d] for d in range(k))
                pairs = pairs - (s * theta - torch.log(1 + torch.exp(theta)))
    quant = sum((b[i, d] - u[i, d]) ** 2 for i in range(n) for d in range(k))
    return pairs, quant


def test_loss_value_and_gradient_match_the_papers_objective():
    """With the bank holding every training output and B fixed (not sign(u): the paper's b_i are
    the discrete codes), the batch gradient is the paper's gradient / (n * batch size), and over
    the whole set the value is (2 * pairs + eta * quantisation) / n^2 (the hashbench-DPSH scale)."""
    eta = 55.0
    method = _method(eta=eta)
    B = _signs(7, N, K)
    method.discrete.B.copy_(B)
    method.discrete.coded.fill_(True)
    u_all = _rand(3, N, K, scale=1.5).requires_grad_()
    pairs, quant = _paper_network_terms(u_all, LABELS, B, eta)
    (pairs + eta * quant).backward()

    everyone = method.compute_loss(u_all.detach().clone(), LABELS, torch.arange(N))  # fills the bank
    torch.testing.assert_close(everyone["loss"], (2 * pairs.detach() + eta * quant.detach()) / N ** 2,
                               rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(everyone["quantization"], quant.detach() / N ** 2, rtol=1e-10, atol=1e-12)

    batch = torch.tensor([4, 1, 3])
    u = u_all.detach()[batch].clone().requires_grad_()
    out = method.compute_loss(u, LABELS[batch], batch)
    out["loss"].backward()
    torch.testing.assert_close(u.grad * N * len(batch), u_all.grad[batch], rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(out["likelihood"] + eta * out["quantization"], out["loss"].detach())
    assert torch.equal(method.discrete.B, B.float())  # the step does not touch B


def test_w_step_is_the_closed_form_minimiser():
    B, Y = _signs(1, 20, K), LABELS.double().repeat(4, 1)[:20]
    mu, nu = 1.0, 0.1
    W = fit_classifier(B, Y, mu, nu).requires_grad_()
    value = w_objective(B, Y, W, mu, nu)
    (grad,) = torch.autograd.grad(value, W)
    assert grad.abs().max() < 1e-9  # stationary point of a strictly convex function: the minimum
    for seed in range(5):  # and no other W does better, the previous one (0) included
        other = W.detach() + _rand(seed, K, 4, scale=0.1)
        assert w_objective(B, Y, other, mu, nu) >= value
    assert w_objective(B, Y, torch.zeros(K, 4, dtype=torch.float64), mu, nu) >= value
    # nu / mu is the ridge: for mu = 2, nu = 0.2 the same W
    torch.testing.assert_close(fit_classifier(B, Y, 2.0, 0.2), W.detach())


@pytest.mark.parametrize("seed", range(4))
def test_every_dcc_bit_update_does_not_increase_the_objective_and_stays_binary(seed):
    n, mu, eta = 12, 1.0, 0.5  # a small eta: the classifier term matters, bits do flip
    Y, U = LABELS.double().repeat(2, 1), _rand(seed, n, K)
    W = _rand(seed + 10, K, 4)
    B = _signs(seed + 20, n, K)
    P = Y @ W.T + (eta / mu) * U
    G = W @ W.T
    before = b_objective(B, U, Y, W, mu, eta)
    flips = 0
    for _sweep in range(10):
        for k in range(K):
            old = B.clone()
            update_bit(B, P, G, k)
            after = b_objective(B, U, Y, W, mu, eta)
            assert after <= before + 1e-12
            assert set(B.unique().tolist()) <= {-1.0, 1.0}
            # the update is the exact minimum over bit k: no other setting of that bit does better
            for i in range(n):
                flipped = B.clone()
                flipped[i, k] = -flipped[i, k]
                assert b_objective(flipped, U, Y, W, mu, eta) >= after - 1e-12
            flips += int((old != B).sum())
            before = after
    assert flips > 0  # the test exercised actual flips


def test_dcc_converges_to_a_point_no_single_flip_improves():
    n, mu, eta = 10, 1.0, 0.3
    Y, U, W = LABELS.double().repeat(2, 1)[:n], _rand(5, n, K), _rand(6, K, 4)
    start = _signs(8, n, K)
    B, run = dcc(start, Y @ W.T + (eta / mu) * U, W, sweeps=50)
    assert run < 50 and set(B.unique().tolist()) <= {-1.0, 1.0}
    assert b_objective(B, U, Y, W, mu, eta) <= b_objective(start, U, Y, W, mu, eta)
    best = b_objective(B, U, Y, W, mu, eta)
    for i, k in itertools.product(range(n), range(K)):
        flipped = B.clone()
        flipped[i, k] *= -1
        assert b_objective(flipped, U, Y, W, mu, eta) >= best - 1e-12
    assert torch.equal(start, _signs(8, n, K))  # dcc works on a copy


def test_hand_computed_b_steps_pin_eta_over_mu():
    U = _rand(2, N, K)
    Y = LABELS.double()
    # W = 0: the classifier says nothing, B = sign(U) in one sweep
    B, run = dcc(_signs(3, N, K), (55.0 / 1.0) * U, torch.zeros(K, 4, dtype=torch.float64), sweeps=10)
    assert torch.equal(B, torch.where(U > 0, 1.0, -1.0).double()) and run == 2
    # one bit, one class, w = 1: b minimises mu (y - b)^2 + eta (b - u)^2, i.e. b = sign(mu y + eta u)
    y, u, w = torch.tensor([[1.0], [0.0], [1.0]]).double(), torch.tensor([[-0.5], [-0.5], [-3.0]]).double(), \
        torch.ones(1, 1).double()
    for mu, eta, want in [(1.0, 1.0, [1, -1, -1]), (1.0, 55.0, [-1, -1, -1]), (55.0, 1.0, [1, -1, 1])]:
        b, _ = dcc(-torch.ones(3, 1).double(), y @ w.T + (eta / mu) * u, w, sweeps=10)
        assert b.flatten().tolist() == want, (mu, eta)
    assert Y.shape == (N, 4)


def test_ties_keep_the_bit_and_a_zero_start_becomes_plus_one():
    start = _signs(4, N, K)
    zeros = torch.zeros(N, K, dtype=torch.float64)
    W = torch.zeros(K, 4, dtype=torch.float64)
    B, run = dcc(start, zeros, W, sweeps=10)  # every argument is exactly 0
    assert torch.equal(B, start) and run == 1
    B, _ = dcc(zeros, zeros, W, sweeps=10)
    assert torch.equal(B, torch.ones(N, K, dtype=torch.float64))


@pytest.mark.parametrize("mu, eta", [(1.0, 0.5), (3.0, 0.7)])
def test_the_epoch_step_lowers_the_whole_objective_in_w_then_b(mu, eta):
    method = _method(mu=mu, eta=eta)  # small eta so that the classifier moves bits
    U = _rand(4, N, K)
    method.compute_loss(U.float(), LABELS, torch.arange(N))  # bank = U, B = sign(U) (first sight)
    loss = method.discrete
    assert torch.equal(loss.B, torch.where(U > 0, 1.0, -1.0).float()) and bool(loss.coded.all())
    loss.B.copy_(_signs(9, N, K).float())  # start away from sign(U)
    loss.W.copy_(_rand(1, K, 4).float())
    Y, bank = LABELS.double(), method.loss.bank.double()

    def whole(B, W):
        return float(b_objective(B, bank, Y, W, loss.mu, loss.eta) + loss.nu * W.pow(2).sum())

    before = whole(loss.B.double(), loss.W.double())
    W_next = fit_classifier(loss.B.double(), Y, loss.mu, loss.nu)
    middle = whole(loss.B.double(), W_next)
    method.on_epoch_end(0, 3)
    after = whole(loss.B.double(), loss.W.double())
    assert after <= middle <= before and after < before
    torch.testing.assert_close(loss.W.double(), W_next, rtol=1e-6, atol=1e-6)  # W fit on the old B
    assert set(loss.B.unique().tolist()) <= {-1.0, 1.0} and 1 <= method.sweeps < 10  # converged
    best = b_objective(loss.B.double(), bank, Y, loss.W.double(), mu, eta)
    for i, k in itertools.product(range(N), range(K)):  # a fixed point of DCC on mu, eta's objective
        flipped = loss.B.double().clone()
        flipped[i, k] *= -1
        assert b_objective(flipped, bank, Y, loss.W.double(), mu, eta) >= best - 1e-9
    # deterministic: the same state gives the same step (every DDP process computes it alike)
    again = discrete_step(_signs(9, N, K).float(), method.loss.bank, LABELS, loss.mu, loss.nu, loss.eta, 10)
    assert torch.equal(again[0].float(), loss.B) and torch.equal(again[1].float(), loss.W)


def test_rows_take_sign_u_when_first_seen_until_the_first_step():
    method = _method()
    loss = method.discrete
    u1 = _rand(1, 3, K).float()
    method.compute_loss(u1, LABELS[:3], torch.arange(3))
    assert torch.equal(loss.B[:3], torch.where(u1 > 0, 1.0, -1.0)) and loss.coded.tolist() == [True] * 3 + [False] * 3
    method.compute_loss(-u1, LABELS[:3], torch.arange(3))  # seen again: its code stays
    assert torch.equal(loss.B[:3], torch.where(u1 > 0, 1.0, -1.0))
    method.on_epoch_end(0, 2)  # W fitted on rows 0-2 only; every row gets a DCC code
    torch.testing.assert_close(loss.W.double(), fit_classifier(torch.where(u1 > 0, 1.0, -1.0).double(),
                                                               LABELS[:3].double(), 1.0, 0.1), rtol=1e-6, atol=1e-6)
    assert bool(loss.coded.all()) and set(loss.B.unique().tolist()) <= {-1.0, 1.0}


def test_batch_update_is_the_released_codes_per_batch_step():
    method = _method(update="batch", eta=0.5)
    u = _rand(2, N, K).float().requires_grad_()
    out = method.compute_loss(u, LABELS, torch.arange(N))
    W = fit_classifier(torch.where(u.detach() > 0, 1.0, -1.0).double(), LABELS.double(), 1.0, 0.1)
    want, _ = dcc(torch.zeros(N, K, dtype=torch.float64), LABELS.double() @ W.T + 0.5 * u.detach().double(), W, 10)
    assert torch.equal(method.discrete.B, want.float())
    torch.testing.assert_close(out["quantization"], (want.float() - u.detach()).pow(2).sum() / N ** 2)
    B = method.discrete.B.clone()
    method.on_epoch_end(0, 2)  # nothing happens at the end of an epoch
    assert torch.equal(method.discrete.B, B)


def test_defaults_and_structure():
    method = build(METHODS, dict(type="dsdh", n_bits=16))
    assert isinstance(method.loss, TrainingSetBank) and isinstance(method.discrete, DSDHLoss)
    d = method.discrete
    assert (d.mu, d.nu, d.eta, d.dcc_iter, d.update, d.similarity_name) == (1.0, 0.1, 55.0, 10, "epoch", "binary")
    assert method.relaxation == "identity" and method.bypass is False and method.lr_mult == {}
    z = torch.randn(3, 16)
    assert torch.equal(method.relax(z, 0.3), z)
    method.begin(_Split(LABELS))
    assert method.discrete.B.shape == (N, 16) and method.discrete.W.shape == (16, 4)


def test_the_loss_needs_begin_rows_and_the_bank():
    loss = build(METHODS, dict(type="dsdh", n_bits=K)).discrete
    with pytest.raises(HashbenchError, match="needs begin"):
        loss(torch.zeros(2, K), LABELS[:2], torch.arange(2))


@pytest.mark.parametrize("params, match", [
    (dict(mu=0.0), "mu must be a number > 0; got 0"),
    (dict(nu=0.0), "nu must be a number > 0; got 0"),
    (dict(eta=-1.0), "eta must be a number >= 0; got -1"),
    (dict(dcc_iter=0), "dcc_iter must be an integer >= 1; got 0"),
    (dict(update="sometimes"), "update must be one of epoch, batch; got 'sometimes'"),
    (dict(similarity="graded"), "dsdh needs a similarity with values in \\[0, 1\\]; got 'graded'"),
])
def test_invalid_values_are_refused_in_one_line(params, match):
    with pytest.raises(HashbenchError, match=match) as err:
        build(METHODS, dict(type="dsdh", n_bits=8, **params))
    assert "\n" not in str(err.value)
