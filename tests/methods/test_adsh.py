"""ADSH's loss against a literal transcription of the paper's objective, its discrete V step against
the brute-force objective and a transcription of the bit-wise update, Omega's sampling, the outer
loop on the trainer's epochs, and encoding (training ids get their V rows)."""
from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from hashbench.errors import HashbenchError
from hashbench.methods.adsh import OmegaBatches, OmegaOrder
from hashbench.registry import LOSSES, METHODS, build

# 5 training items x 4 labels, multi-label; item pairs (0, 3), (1, 2), (1, 3), (1, 4) share nothing
LABELS = torch.tensor([[1, 1, 0, 0], [1, 0, 0, 0], [0, 1, 1, 0], [0, 0, 0, 1], [0, 0, 1, 1]], dtype=torch.float32)
N, K, GAMMA = 5, 6, 200.0


def _signs(seed, shape):
    g = torch.Generator().manual_seed(seed)
    return torch.where(torch.rand(*shape, generator=g) > 0.5, 1.0, -1.0).double()


def _loss(**kw):
    loss = build(LOSSES, dict(type="adsh", **kw))
    loss.begin(LABELS, K)
    return loss


def _s(i, j, soft, r):
    """S_ij of the paper (+1 similar, -1 not), or the released code's soft constraint (1, -r)."""
    similar = sum(float(LABELS[i, c]) * float(LABELS[j, c]) for c in range(LABELS.shape[1])) > 0
    return 1.0 if similar else (-r if soft else -1.0)


def _r():
    """Similar / dissimilar pairs over every ordered pair of training items (self-pairs included)."""
    similar = sum(_s(i, j, False, 0) > 0 for i in range(N) for j in range(N))
    return similar / (N * N - similar)


def _oracle(u, V, batch, gamma, soft=False):
    """sum_{i in batch} [sum_{j in Gamma} (u_i . v_j - K S_ij)^2 + gamma ||v_i - u_i||^2] / (n |batch|),
    u the batch's tanh outputs (row b is training item batch[b])."""
    r = _r()
    total = u.new_zeros(())
    for b, i in enumerate(batch):
        for j in range(N):
            inner = sum(u[b, k] * V[j, k] for k in range(K))
            total = total + (inner - K * _s(i, j, soft, r)) ** 2
        for k in range(K):
            total = total + gamma * (V[i, k] - u[b, k]) ** 2
    return total / (N * len(batch))


def _objective(U, V, omega, gamma):
    """The paper's J(V) with the network fixed: sum over i in Omega, j in Gamma, plus gamma * quantisation."""
    total = 0.0
    for i in omega:
        for j in range(N):
            total += (float(U[i] @ V[j]) - K * _s(i, j, False, 0)) ** 2
        total += gamma * float(((V[i] - U[i]) ** 2).sum())
    return total


@pytest.mark.parametrize("soft", [False, True])
def test_value_and_gradient_match_the_formula(soft):
    loss = _loss(soft_constraint=soft)
    V = _signs(1, (N, K))
    loss.V = V.clone()
    loss.U = torch.zeros(N, K, dtype=torch.float64)
    batch = torch.tensor([3, 0, 4])
    g = torch.Generator().manual_seed(2)
    z1 = torch.randn(3, K, generator=g, dtype=torch.float64).requires_grad_()
    z2 = z1.detach().clone().requires_grad_()
    out = loss(torch.tanh(z1), LABELS[batch], batch)
    out["loss"].backward()
    ref = _oracle(torch.tanh(z2), V, batch.tolist(), GAMMA, soft=soft)
    ref.backward()
    torch.testing.assert_close(out["loss"], ref, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(z1.grad, z2.grad, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(out["fit"] + GAMMA * out["quantization"], out["loss"].detach())
    if soft:
        assert loss.r == pytest.approx(_r()) and 0 < loss.r != 1


def test_gradient_is_the_papers():
    """dJ/du_i = 2 sum_j (u_i . v_j - K S_ij) v_j + 2 gamma (u_i - v_i), here divided by n |B|."""
    loss = _loss()
    V = _signs(3, (N, K))
    loss.V = V.clone()
    loss.U = torch.zeros(N, K, dtype=torch.float64)
    batch = [1, 2]
    u = torch.tanh(torch.randn(2, K, generator=torch.Generator().manual_seed(4), dtype=torch.float64))
    u.requires_grad_()
    loss(u, LABELS[batch], torch.tensor(batch))["loss"].backward()
    for b, i in enumerate(batch):
        want = 2 * GAMMA * (u[b].detach() - V[i])
        for j in range(N):
            want = want + 2 * (float(u[b].detach() @ V[j]) - K * _s(i, j, False, 0)) * V[j]
        torch.testing.assert_close(u.grad[b] * N * len(batch), want, rtol=1e-10, atol=1e-10)


def test_zero_codes_by_hand_pin_k_gamma_and_the_scale():
    """V = 0 (the released init) and u = 0: each item costs sum_j (K S_ij)^2 = n K^2, then / n;
    with V = ±1 and u = 0 the quantisation adds gamma K / n per item."""
    loss = _loss()
    u = torch.zeros(2, K, dtype=torch.float64, requires_grad=True)
    out = loss(u, LABELS[:2], torch.arange(2))
    assert float(out["loss"].detach()) == pytest.approx(K * K)  # (n K^2) / n
    loss.V = torch.ones(N, K, dtype=torch.float64)
    out = loss(u, LABELS[:2], torch.arange(2))
    assert float(out["quantization"]) == pytest.approx(K / N)
    assert float(out["loss"].detach()) == pytest.approx(K * K + GAMMA * K / N)
    total = _loss(reduction="sum")
    total.V = torch.ones(N, K, dtype=torch.float64)
    assert float(total(u, LABELS[:2], torch.arange(2))["loss"].detach()) == pytest.approx(2 * float(out["loss"].detach()))


def _fill(loss, omega, seed=5):
    """Feed the outputs of Omega's items through the loss (as the trainer's steps do); return U."""
    g = torch.Generator().manual_seed(seed)
    u = torch.tanh(torch.randn(N, K, generator=g, dtype=torch.float64) * 2)
    loss(u[omega], LABELS[omega], torch.tensor(omega))
    return u


def _transcribed_step(U, V, omega, gamma):
    """The paper's bit loop, written out: Q = -2K S^T U~ - 2 gamma U_bar; V_k = -sign(2 V^ U^^T u~_k + Q_k)."""
    Ut = U[omega].numpy()
    S = np.array([[_s(i, j, False, 0) for j in range(N)] for i in omega])
    Ubar = np.zeros((N, K))
    Ubar[omega] = Ut
    Q = -2 * K * S.T @ Ut - 2 * gamma * Ubar
    V = V.numpy().copy()
    for k in range(K):
        rest = [c for c in range(K) if c != k]
        V[:, k] = -np.sign(2 * V[:, rest] @ (Ut[:, rest].T @ Ut[:, k]) + Q[:, k])
    return torch.from_numpy(V)


@pytest.mark.parametrize("gamma", [GAMMA, 5.0])  # 5: the quantisation term competes with the others
@pytest.mark.parametrize("omega", [[0, 2, 3], [0, 1, 2, 3, 4]])
def test_the_v_step_never_increases_the_objective_and_is_the_papers_update(omega, gamma):
    loss = _loss(init="random", gamma=gamma)
    loss.V = _signs(6, (N, K))
    before_v = loss.V.clone()
    u = _fill(loss, omega)
    assert torch.equal(loss.U[omega], u[omega]) and loss.seen.tolist() == [i in omega for i in range(N)]
    before = _objective(loss.U, loss.V, omega, gamma)
    assert loss.update_codes()
    after = _objective(loss.U, loss.V, omega, gamma)
    assert after <= before + 1e-9
    assert set(loss.V.unique().tolist()) <= {-1.0, 1.0}
    torch.testing.assert_close(loss.V, _transcribed_step(loss.U, before_v, omega, gamma))
    # the last bit was updated last, with the final other columns: it is the best of all 2^n columns
    best = min(_objective(loss.U, torch.cat([loss.V[:, :-1], torch.tensor(c, dtype=torch.float64)[:, None]], 1),
                          omega, gamma) for c in itertools.product([-1.0, 1.0], repeat=N))
    assert after == pytest.approx(best, rel=1e-12)
    assert not loss.seen.any()  # Omega is forgotten: the next outer iteration samples a new one


def test_from_zeros_one_step_makes_v_binary_and_an_empty_omega_changes_nothing():
    loss = _loss()
    assert torch.equal(loss.V, torch.zeros(N, K)) and not loss.update_codes()
    assert torch.equal(loss.V, torch.zeros(N, K))
    _fill(loss, [1, 4])
    assert loss.update_codes()
    assert set(loss.V.unique().tolist()) == {-1.0, 1.0}


def test_q_sign_is_the_matlab_release_linear_term():
    gamma = 0.5
    loss = _loss(q_sign=True, gamma=gamma)
    loss.V = _signs(7, (N, K))
    before_v = loss.V.clone()
    _fill(loss, [0, 1, 3])
    U = loss.U.clone()
    loss.update_codes()
    # the MATLAB release: Q from sign(U~), the quadratic term from U~
    Ut, H = U[[0, 1, 3]].numpy(), np.sign(U[[0, 1, 3]].numpy())
    S = np.array([[_s(i, j, False, 0) for j in range(N)] for i in [0, 1, 3]])
    Ubar = np.zeros((N, K))
    Ubar[[0, 1, 3]] = Ut
    Q = -2 * K * S.T @ H - 2 * gamma * Ubar
    V = before_v.numpy().copy()
    for k in range(K):
        rest = [c for c in range(K) if c != k]
        V[:, k] = np.sign(-2 * V[:, rest] @ Ut[:, rest].T @ Ut[:, k] - Q[:, k])
    torch.testing.assert_close(loss.V, torch.from_numpy(V))


class _Split:
    def __init__(self, labels, ids):
        self.labels, self.ids = labels.numpy(), np.asarray(ids)

    def __len__(self):
        return len(self.labels)


def test_encode_gives_training_ids_their_v_rows():
    method = build(METHODS, dict(type="adsh", n_bits=K))
    method.begin(_Split(LABELS, [f"train/{i}" for i in range(N)]))
    method.loss.V.copy_(_signs(8, (N, K)))
    learned = (method.loss.V > 0).numpy().astype(np.uint8)
    database = _Split(LABELS[:4], ["database/0", "train/3", "database/1", "train/0"])
    net = np.full((4, K), 7, dtype=np.uint8)  # marks the network's codes
    codes = method.encode("database", database, lambda split: net.copy())
    assert (codes[0] == 7).all() and (codes[2] == 7).all()
    assert np.array_equal(codes[1], learned[3]) and np.array_equal(codes[3], learned[0])
    # queries are always the network's, even a training item; database="network": every item
    query = _Split(LABELS[:1], ["train/3"])
    assert (method.encode("query", query, lambda split: net[:1].copy()) == 7).all()
    hashed = build(METHODS, dict(type="adsh", n_bits=K, database="network"))
    hashed.begin(_Split(LABELS, [f"train/{i}" for i in range(N)]))
    assert (hashed.encode("database", database, lambda split: net.copy()) == 7).all()


def test_omega_is_sampled_per_outer_iteration_and_visited_whole_each_epoch():
    order = OmegaOrder(20, 8, 3, seed=0)
    omegas = [set(order.omega(e).tolist()) for e in range(6)]
    assert omegas[0] == omegas[1] == omegas[2] and omegas[3] == omegas[4] == omegas[5] and omegas[0] != omegas[3]
    assert all(len(o) == 8 for o in omegas)
    for e in range(6):
        order.set_epoch(e)
        rows = list(order)
        assert sorted(rows) == sorted(omegas[e]) and len(order) == 8
    assert list(OmegaOrder(20, 8, 3, seed=0).rows(1)) != list(OmegaOrder(20, 8, 3, seed=0).rows(2))  # reshuffled
    assert np.array_equal(OmegaOrder(20, 8, 3, seed=0).rows(4), order.rows(4))  # a function of (seed, epoch)
    assert not np.array_equal(OmegaOrder(20, 8, 3, seed=1).rows(4), order.rows(4))
    # two processes: each takes its share of every global batch of 4; gathered, the single order
    shares = []
    for rank in range(2):
        o = OmegaOrder(20, 8, 3, seed=0, rank=rank, replicas=2, batch=4)
        o.set_epoch(4)
        shares.append(np.array(list(o)).reshape(-1, 2))
        assert len(o) == 4
    assert np.array_equal(np.concatenate(shares, 1).reshape(-1), order.rows(4))
    # m larger than the training set: Omega is all of it
    source = OmegaBatches(_Split(LABELS, [str(i) for i in range(N)]), seed=0, num_samples=2000, per_iteration=3)
    assert len(source) == N and sorted(source.order(None, rank=0, replicas=1, batch=2)) == list(range(N))


def test_v_step_runs_after_each_outer_iteration_and_after_the_last_epoch(monkeypatch):
    method = build(METHODS, dict(type="adsh", n_bits=K))
    method.begin(_Split(LABELS, [str(i) for i in range(N)]))
    steps = []
    monkeypatch.setattr(method.loss, "update_codes", lambda: steps.append(True))
    ends = []
    for epoch in range(8):
        before = len(steps)
        method.on_epoch_end(epoch, 8)
        if len(steps) > before:
            ends.append(epoch)
    assert ends == [2, 5, 7]


def test_defaults_and_refusals():
    method = build(METHODS, dict(type="adsh", n_bits=16))
    assert (method.loss.gamma, method.num_samples, method.epochs_per_iteration) == (200.0, 2000, 3)
    assert method.loss.init == "zeros" and not method.loss.soft_constraint and not method.loss.q_sign
    assert method.relaxation == "tanh" and method.bypass is False and method.database == "learned"
    for bad, match in [(dict(gamma=-1.0), "gamma"), (dict(num_samples=0), "num_samples"),
                       (dict(epochs_per_iteration=0), "epochs_per_iteration"), (dict(database="all"), "database"),
                       (dict(init="ones"), "init"), (dict(similarity="graded"), "graded")]:
        with pytest.raises(HashbenchError, match=match) as e:
            build(METHODS, dict(type="adsh", n_bits=16, **bad))
        assert "\n" not in str(e.value)
    with pytest.raises(HashbenchError, match="needs begin"):
        build(LOSSES, dict(type="adsh"))(torch.zeros(2, K), LABELS[:2], torch.arange(2))
