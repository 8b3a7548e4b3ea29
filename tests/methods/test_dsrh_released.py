"""DSRH as released: the gradient of kLocRankGrad, the self-pair, contiguous rows in order, the
released network's head (dsrh.md, "Loss", "Sampling", "Network")."""
import math

import numpy as np
import pytest
import torch

from hashbench.datasets.base import ArraySplit
from hashbench.errors import HashbenchError
from hashbench.methods.dsrh import DSRHLoss
from hashbench.methods.dsrh_sampler import TRIPLETS, ReleasedTriplets
from hashbench.registry import BACKBONES, METHODS, build
from hashbench.sampling import Tuples


def split_of(labels):
    labels = np.asarray(labels, np.uint8)
    return ArraySplit(np.arange(len(labels) * 12, dtype=np.uint8).reshape(len(labels), 3, 2, 2), labels)


LABELS = [[1, 1, 0], [1, 1, 0], [1, 0, 0], [0, 0, 1], [0, 0, 0], [1, 1, 1], [0, 1, 0]]


def released_negative_gradient(s1, s2, s3, w, margin, rho):
    """A line-by-line transcription of ``kLocRankGrad`` (cudaconvnet/src/layer_kernels.cu): the
    *negative* gradient on the sigmoid outputs of the anchor, more and less relevant branch, before
    cuda-convnet divides it by the minibatch size."""
    n, k = s1.shape
    cost = w * (margin + 0.5 * (((2 * s1 - 1) * (2 * s3 - 1)).sum(1) - ((2 * s1 - 1) * (2 * s2 - 1)).sum(1)))
    mean = (2 * s1 - 1).mean(0)
    g1, g2, g3 = np.zeros((n, k)), np.zeros((n, k)), np.zeros((n, k))
    for r in range(n):
        for j in range(k):
            if cost[r] > 0:
                g1[r, j] = w[r] * 2 * (s2[r, j] - s3[r, j])
                g2[r, j] = w[r] * (2 * s1[r, j] - 1)
                g3[r, j] = w[r] * -1 * (2 * s1[r, j] - 1)
            g1[r, j] = g1[r, j] - w[r] * rho * 2 * mean[j] / n
    return g1, g2, g3


def test_released_scaling_has_the_released_gradient():
    """Rows as the released batches hold them (each row its own three images): the loss with
    balance='released' differentiates to kLocRankGrad's gradient / N, hinge and balance alike."""
    rng = np.random.default_rng(0)
    n, k, margin = 9, 6, 1.0
    z0 = rng.normal(0, 1.5, (n, 3, k))
    z0[::2, 1], z0[::2, 2] = 3 * z0[::2, 0], -3 * z0[::2, 0]  # these rows already rank right: no hinge
    z = torch.tensor(z0.reshape(3 * n, k), requires_grad=True)
    s = torch.sigmoid(z)
    s.retain_grad()
    w = torch.tensor(rng.uniform(0.2, 1.5, n))
    index = torch.arange(3 * n).view(n, 3)
    loss = DSRHLoss(margin=margin, alpha=1.0, balance="released")
    out = loss(2 * s - 1, torch.zeros(3 * n, 2), torch.arange(3 * n), tuples=Tuples(index, w))
    out["loss"].backward()
    sn = s.detach().numpy().reshape(n, 3, k)
    g1, g2, g3 = released_negative_gradient(sn[:, 0], sn[:, 1], sn[:, 2], w.numpy(), margin, rho=1.0)
    got = s.grad.numpy().reshape(n, 3, k)
    assert np.allclose(got[:, 0], -g1 / n, atol=1e-12)
    assert np.allclose(got[:, 1], -g2 / n, atol=1e-12)
    assert np.allclose(got[:, 2], -g3 / n, atol=1e-12)
    # some rows must be inactive and some active for this to test both branches
    cost = (w.numpy() * (margin + 0.5 * ((2 * sn[:, 0] - 1) * (2 * sn[:, 2] - 1 - (2 * sn[:, 1] - 1))).sum(1)))
    assert (cost > 0).any() and (cost <= 0).any()


def test_released_scaling_is_one_nth_of_the_batch_scaling():
    """With equal weights, the balance term's gradient on the anchors is the batch scaling's / N."""
    rng = np.random.default_rng(1)
    n, k = 64, 8
    codes = torch.tensor(rng.uniform(-0.2, 0.9, (3 * n, k)), requires_grad=True)
    tuples = Tuples(torch.arange(3 * n).view(n, 3), torch.ones(n, dtype=torch.float64))

    def anchor_grad(mode, alpha):
        codes.grad = None
        DSRHLoss(margin=1.0, alpha=alpha, balance=mode)(codes, torch.zeros(3 * n, 2), None, tuples=tuples)["loss"].backward()
        return codes.grad[0::3].clone()

    balance = {mode: anchor_grad(mode, 1.0) - anchor_grad(mode, 0.0) for mode in ("batch", "released")}
    assert balance["batch"].abs().max() > 1e-3
    assert torch.allclose(balance["released"], balance["batch"] / n, rtol=1e-10, atol=1e-15)


def test_released_balance_needs_tuples_and_the_released_sampler():
    with pytest.raises(HashbenchError, match="needs the released sampler's tuples"):
        DSRHLoss(balance="released")(torch.zeros(4, 8), torch.ones(4, 2))
    for key, value in (("balance", "released"), ("self_pair", True), ("rows", True)):
        with pytest.raises(HashbenchError, match="needs sampler='released'"):
            build(METHODS, dict(type="dsrh", **{key: value}), n_bits=8)


def test_self_pair_counts_the_anchor_in_its_own_relevance():
    lab = np.asarray(LABELS)
    with_self = ReleasedTriplets(split_of(LABELS), seed=0, self_pair=True)
    without = ReleasedTriplets(split_of(LABELS), seed=0)
    picked_self = False
    for epoch in range(20):
        for s in (with_self, without):
            s.set_epoch(epoch)
        for k in range(len(with_self)):
            (q, a, b, neg), _ = with_self.draw(k)
            r = lab @ lab[q]
            assert r[a] == lab[q].sum()  # r_max = |y_q|: the anchor is always at the top level
            picked_self |= a == q
        for k in range(len(without)):
            (q, a, _, _), _ = without.draw(k)
            assert a != q
    assert picked_self  # image 5 = [1, 1, 1] is the only one at its level: x_a is the anchor itself
    (q, a, _, _), _ = with_self.draw(int(np.flatnonzero(with_self.anchors == 5)[0]))
    assert q == a == 5


def test_rows_are_contiguous_per_anchor_in_order_and_carry_their_triplet():
    s = ReleasedTriplets(split_of(LABELS), seed=4, self_pair=True, rows=True)
    keys = list(s.order(torch.Generator().manual_seed(0), rank=0, replicas=1, batch=5))
    assert [i for _, i in keys] == list(range(len(s)))  # walked in order, not shuffled
    assert np.all(np.diff(s.row_repeat) >= 0)  # an anchor repeat's rows are contiguous
    assert np.array_equal(np.unique(s.row_repeat), np.arange(len(s.anchors)))
    for row in range(len(s)):
        k, t = int(s.row_repeat[row]), int(s.row_triplet[row])
        slots, w = s.draw(k)
        x, y, rows, weight = s[row]
        assert rows.tolist() == slots[list(TRIPLETS[t])].tolist() and weight.tolist() == [w[t]]
        assert w[t] > 0
        assert torch.equal(x, torch.stack([torch.as_tensor(s.split[int(i)][0]) for i in rows]))
    per_repeat = np.bincount(s.row_repeat)
    assert set(per_repeat) <= {1, 3}
    batch = [torch.stack([s[i][j] for i in range(4)]) for j in range(4)]
    x, y, rows, tuples = s.unpack(batch)
    assert x.shape == (12, 3, 2, 2) and tuples.index.tolist() == [[3 * b, 3 * b + 1, 3 * b + 2] for b in range(4)]


def test_rows_and_anchors_from_label_sets_equal_a_per_image_count():
    """The label-set bookkeeping against brute force over images, with and without the self-pair."""
    rng = np.random.default_rng(3)
    labels = (rng.random((60, 5)) < 0.3).astype(np.uint8)
    for self_pair in (False, True):
        s = ReleasedTriplets(split_of(labels), self_pair=self_pair, rows=True, balance_count=1)
        want_anchors, want_rows = [], []
        for q in range(len(labels)):
            if not labels[q].any():
                continue
            r = labels.astype(int) @ labels[q].astype(int)
            if not self_pair:
                r[q] = -1
            if not (r == 0).any() or r.max() <= 0:
                continue
            want_anchors.append(q)
            top = r.max()
            want_rows.append(3 if top >= 2 and ((r > 0) & (r < top)).any() else 1)
        assert np.unique(s.anchors).tolist() == want_anchors
        got_rows = [int(np.bincount(s.row_repeat)[np.flatnonzero(s.anchors == q)[0]]) for q in want_anchors]
        assert got_rows == want_rows
        for k in range(len(s.anchors)):  # the draws agree with the row counts
            _, w = s.draw(k)
            assert (w > 0).sum() == want_rows[want_anchors.index(int(s.anchors[k]))]


def test_the_released_head_dropout_and_initialisation():
    from hashbench.model import DeepHasher

    method = build(METHODS, dict(type="dsrh", head_init=dict(std=0.01, bias=1.0), dropout=0.5), n_bits=16)
    backbone = build(BACKBONES, dict(type="timm", name="test_resnet"))
    torch.manual_seed(0)
    net = DeepHasher.for_method(backbone, method)
    assert torch.all(net.head.final.bias == 1.0)
    for layer in (net.head.final, net.head.lower):
        assert abs(layer.weight.std().item() - 0.01) < 0.001 and abs(layer.weight.mean().item()) < 0.001
    assert net.head.dropout.p == 0.5
    default = DeepHasher.for_method(backbone, build(METHODS, dict(type="dsrh"), n_bits=16))
    assert default.head.dropout.p == 0.0 and not torch.all(default.head.final.bias == 1.0)
    for bad in ("ones", dict(std=0.01), dict(std=0, bias=1.0)):
        with pytest.raises(Exception, match="head_init must be"):
            build(METHODS, dict(type="dsrh", head_init=bad), n_bits=16)


def test_the_released_weight_of_a_single_triplet_is_ln2():
    s = ReleasedTriplets(split_of([[1, 0], [1, 0], [0, 1]]), rows=True, self_pair=True)
    for row in range(len(s)):
        assert s[row][3].item() == pytest.approx(math.log(2))


def test_contradicting_parameters_stop_the_run_before_any_work(tmp_path, capsys):
    from hashbench.cli import main

    out = tmp_path / "out"
    assert main(["run", f"out={out}", "methods=lsh,dsrh", "method.rows=true"]) == 2
    err = capsys.readouterr().err
    assert "method 'dsrh' at 16 bits" in err and "needs sampler='released'" in err and "Traceback" not in err
    assert not out.exists()
