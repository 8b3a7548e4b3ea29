"""OrthoHash's margin cosine cross-entropy against a plain loop over items and classes; its codewords,
quantisation term and batch-normalised codes."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from hashbench.errors import HashbenchError
from hashbench.methods.orthohash import OrthoHashLoss
from hashbench.registry import LOSSES, METHODS, build

# 5 items x 4 labels, multi-label (item 4 carries three labels)
LABELS = torch.tensor([[1, 0, 0, 0], [1, 1, 0, 0], [0, 0, 1, 0], [0, 1, 0, 1], [1, 0, 1, 1]], dtype=torch.float64)
# 4 classes x 6 bits
WORDS = torch.tensor([[1, 1, -1, 1, -1, 1],
                      [1, -1, 1, 1, 1, -1],
                      [-1, 1, 1, -1, 1, 1],
                      [-1, 1, -1, -1, -1, -1]], dtype=torch.float64)


def _codes(seed=0, b=5, k=6):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(b, k, generator=g, dtype=torch.float64).requires_grad_()


def _loss(words=WORDS, **kwargs):
    loss = build(LOSSES, dict(type="orthohash", **kwargs))
    loss.begin(torch.zeros(1, words.shape[0]), words.shape[1])
    loss.codewords = words.clone()
    return loss


def _oracle(v, y, o, s, m, arc=False, quan=0.0, quan_type="cs"):
    """mean_i [ -sum_c (y_ic / sum_j y_ij) log softmax_c(s (cos_ic - m y_ic)) + quan Q_i ], term by term."""
    n, k = v.shape
    total = v.new_zeros(())
    for i in range(n):
        norm_v = torch.sqrt(sum(v[i, b] ** 2 for b in range(k)))
        logits = []
        for c in range(o.shape[0]):
            norm_o = math.sqrt(sum(float(o[c, b]) ** 2 for b in range(k)))
            cos = sum(v[i, b] * float(o[c, b]) for b in range(k)) / (norm_v * norm_o)
            if arc:
                logits.append(s * torch.cos(torch.acos(cos) + m * float(y[i, c])))
            else:
                logits.append(s * (cos - m * float(y[i, c])))
        log_z = torch.log(sum(torch.exp(x) for x in logits))
        n_labels = float(y[i].sum())
        for c in range(o.shape[0]):
            if y[i, c] > 0:
                total = total - (1.0 / n_labels) * (logits[c] - log_z)
        signs = [1.0 if float(v[i, b].detach()) > 0 else -1.0 for b in range(k)]
        if quan_type == "cs":
            q = 1 - sum(v[i, b] * signs[b] for b in range(k)) / (norm_v * math.sqrt(k))
        elif quan_type == "l1":
            q = sum(torch.abs(v[i, b] - signs[b]) for b in range(k)) / k
        else:
            q = sum((v[i, b] - signs[b]) ** 2 for b in range(k)) / k
        total = total + quan * q
    return total / n


@pytest.mark.parametrize("margin_type", ["cos", "arc"])
@pytest.mark.parametrize("quan, quan_type", [(0.0, "cs"), (0.5, "cs"), (0.3, "l1"), (0.7, "l2")])
def test_value_and_gradient_match_the_formula(margin_type, quan, quan_type):
    loss = _loss(margin_type=margin_type, quan=quan, quan_type=quan_type)  # scale None: sqrt(6)
    v1, v2 = _codes(), _codes()
    out = loss(v1, LABELS)
    out["loss"].backward()
    ref = _oracle(v2, LABELS, WORDS, math.sqrt(6), 0.2, arc=margin_type == "arc", quan=quan, quan_type=quan_type)
    ref.backward()
    torch.testing.assert_close(out["loss"], ref, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(v1.grad, v2.grad, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(out["ce"] + quan * out["quantization"], out["loss"].detach())


def test_explicit_scale_and_margin():
    loss = _loss(scale=8.0, margin=0.35)
    v1, v2 = _codes(2), _codes(2)
    loss(v1, LABELS)["loss"].backward()
    _oracle(v2, LABELS, WORDS, 8.0, 0.35).backward()
    torch.testing.assert_close(v1.grad, v2.grad, rtol=1e-12, atol=1e-12)


def test_single_label_is_the_plain_margin_softmax_cross_entropy():
    y = torch.eye(4, dtype=torch.float64)[[2, 0, 3, 1, 2]]
    v = _codes(1).detach()
    cos = F.normalize(v, dim=1) @ F.normalize(WORDS, dim=1).T
    expected = F.cross_entropy(math.sqrt(6) * (cos - 0.2 * y), y.argmax(1))
    torch.testing.assert_close(_loss()(v, y)["loss"], expected, rtol=1e-12, atol=1e-12)


def test_hand_computed_case_pins_scale_sqrt_k_and_margin():
    # 4 Hadamard rows of 4 bits: mutually orthogonal, so a code equal to o_y has cos 1 with its class
    # and 0 with the 3 others. s = sqrt(4) = 2, m = 0.2: L = -log(e^{1.6} / (e^{1.6} + 3)) = log(1 + 3 e^{-1.6})
    h = torch.tensor([[1, 1, 1, 1], [1, -1, 1, -1], [1, 1, -1, -1], [1, -1, -1, 1]], dtype=torch.float64)
    loss = _loss(words=h)
    out = loss(3.0 * h[[1]], torch.eye(4, dtype=torch.float64)[[1]])  # the cosine ignores the norm
    assert float(out["loss"]) == pytest.approx(math.log(1 + 3 * math.exp(-1.6)), rel=1e-12)
    assert float(out["quantization"]) == pytest.approx(0.0, abs=1e-12)  # ±1 directions: cos(v, sign v) = 1
    # two labels {0, 1}, code halfway between o_0 and o_1 (cos 1/sqrt(2) with both, 0 with the others):
    # each positive logit 2 (0.7071 - 0.2), targets 1/2 each
    v = (h[0] + h[1])[None]
    a = 2 * (1 / math.sqrt(2) - 0.2)
    expected = -(a - math.log(2 * math.exp(a) + 2))
    assert float(loss(v, torch.tensor([[1.0, 1, 0, 0]], dtype=torch.float64))["loss"]) == pytest.approx(expected)


def test_quantization_terms_by_hand():
    v = torch.tensor([[2.0, 1.0, -0.5, 0.0]], dtype=torch.float64)  # sign: +, +, -, and 0 -> -1
    b = torch.tensor([1.0, 1.0, -1.0, -1.0], dtype=torch.float64)
    h = torch.ones(1, 4, dtype=torch.float64)
    cs = _loss(words=h, quan_type="cs").quantization(v)
    assert float(cs) == pytest.approx(1 - float(v[0] @ b) / (math.sqrt(5.25) * 2))
    assert float(_loss(words=h, quan_type="l1").quantization(v)) == pytest.approx((1 + 0 + 0.5 + 1) / 4)
    assert float(_loss(words=h, quan_type="l2").quantization(v)) == pytest.approx((1 + 0 + 0.25 + 1) / 4)


def test_an_item_without_labels_contributes_nothing():
    v = _codes(4).detach()
    y = LABELS.clone()
    y[3] = 0
    loss = _loss(reduction="sum")
    out = loss(v, y)["loss"]
    assert torch.isfinite(out)
    torch.testing.assert_close(out, loss(v[[0, 1, 2, 4]], y[[0, 1, 2, 4]])["loss"])


def test_begin_draws_reproducible_codewords_from_the_global_rng():
    labels = torch.zeros(7, 5)
    a, b, c = (build(LOSSES, dict(type="orthohash")) for _ in range(3))
    for loss, seed in ((a, 3), (b, 3), (c, 4)):
        torch.manual_seed(seed)
        loss.begin(labels, 64)
    assert a.codewords.shape == (5, 64) and set(a.codewords.unique().tolist()) == {-1.0, 1.0}
    assert torch.equal(a.codewords, b.codewords) and not torch.equal(a.codewords, c.codewords)
    assert list(a.state_dict()) == ["codewords"]
    torch.manual_seed(0)
    maxhd = build(LOSSES, dict(type="orthohash", codebook="maxhd"))
    maxhd.begin(torch.zeros(1, 10), 32)
    d = 0.5 * (32 - maxhd.codewords @ maxhd.codewords.T)
    assert float(d[~torch.eye(10, dtype=torch.bool)].min()) >= 14


def test_forward_before_begin_and_wrong_shapes_are_refused():
    with pytest.raises(HashbenchError, match="begin"):
        build(LOSSES, dict(type="orthohash"))(torch.zeros(2, 6), torch.ones(2, 4))
    with pytest.raises(HashbenchError, match="codewords are for 4 classes of 6 bits"):
        _loss()(torch.zeros(2, 5), torch.ones(2, 4))


@pytest.mark.parametrize("key, value, match", [
    ("scale", 0.0, "scale"), ("scale", -2.0, "scale"), ("margin", -0.1, "margin"), ("quan", -1.0, "quan"),
    ("margin_type", "angular", "margin_type"), ("quan_type", "l3", "quan_type"), ("codebook", "hadamard", "codebook"),
    ("reduction", "max", "reduction")])
def test_invalid_values_are_refused_in_one_line(key, value, match):
    for make in (lambda: build(METHODS, dict(type="orthohash", n_bits=8, **{key: value})),
                 lambda: OrthoHashLoss(**{key: value})):
        with pytest.raises(HashbenchError, match=match) as err:
            make()
        assert "\n" not in str(err.value)


def test_method_defaults_and_batch_normalised_codes():
    from hashbench.model import DeepHasher
    from hashbench.registry import BACKBONES

    method = build(METHODS, dict(type="orthohash", n_bits=16))
    assert method.family == "pointwise" and method.code_norm == "batch"
    assert method.lr_mult == {"head.": 10.0} and method.bypass is False and method.relaxation == "identity"
    loss = method.loss
    assert loss.scale is None and loss.margin == 0.2 and loss.margin_type == "cos"
    assert loss.quan == 0.0 and loss.quan_type == "cs" and loss.codebook == "bernoulli"
    z = torch.randn(3, 16)
    assert torch.equal(method.relax(z, 0.5), z)
    # the network batch-normalises its outputs; at encoding it uses the running statistics
    torch.manual_seed(0)
    net = DeepHasher.for_method(build(BACKBONES, dict(type="timm", name="test_resnet")), method)
    assert isinstance(net.head.norm, torch.nn.BatchNorm1d) and net.head.norm.num_features == 16
    x = torch.randint(0, 256, (8, 3, 32, 32), dtype=torch.uint8)
    net.train()
    out = net(x).detach().numpy()
    np.testing.assert_allclose(out.mean(axis=0), 0.0, atol=1e-5)  # zero-mean bits over the batch
