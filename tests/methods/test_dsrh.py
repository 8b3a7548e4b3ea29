"""DSRH loss against a plain loop over all triplets, and its weights against hand computation."""
import math

import pytest
import torch

from hashbench.losses import relaxed_hamming
from hashbench.registry import METHODS, build
from hashbench.methods.dsrh import DSRHLoss, ndcg_weights


def loop_loss(b, y, margin, alpha, weighting="ndcg", normalize="idcg", binary=False):
    """DSRH's formula written out triplet by triplet (the oracle)."""
    B, K = b.shape
    rel = [[int((y[q] * y[x]).sum()) for x in range(B)] for q in range(B)]
    if binary:
        rel = [[int(v > 0) for v in row] for row in rel]
    total = b.new_zeros(())
    for q in range(B):
        others = sorted((rel[q][x] for x in range(B) if x != q), reverse=True)
        z = sum((2 ** r - 1) / math.log(p + 2) for p, r in enumerate(others)) if normalize == "idcg" else 1.0
        for i in range(B):
            for j in range(B):
                if q in (i, j) or not rel[q][i] > rel[q][j]:
                    continue
                d_qi = (K - (b[q] * b[i]).sum()) / 2
                d_qj = (K - (b[q] * b[j]).sum()) / 2
                w = (2 ** rel[q][i] - 2 ** rel[q][j]) / z if weighting == "ndcg" else 1.0
                total = total + w * torch.clamp(margin + d_qi - d_qj, min=0)
    balance = sum((b[:, k].mean()) ** 2 for k in range(K)) / 2
    return total / B + alpha * balance


def batch(seed=0, B=7, K=6, C=4):
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(B, K, generator=g, dtype=torch.float64)
    y = (torch.rand(B, C, generator=g) < 0.5).double()
    return z, y


@pytest.mark.parametrize("weighting,normalize,similarity", [
    ("ndcg", "idcg", "graded"), ("ndcg", "none", "graded"), ("none", "idcg", "binary")])
@pytest.mark.parametrize("chunk", [256, 3])
def test_loss_and_gradient_match_triplet_loop(weighting, normalize, similarity, chunk):
    z, y = batch()
    za, zb = z.clone().requires_grad_(), z.clone().requires_grad_()
    loss = DSRHLoss(margin=2.0, alpha=0.7, weighting=weighting, normalize=normalize, similarity=similarity,
                    chunk=chunk)
    got = loss(torch.tanh(za), y)["loss"]
    want = loop_loss(torch.tanh(zb), y, 2.0, 0.7, weighting, normalize, binary=similarity == "binary")
    got.backward()
    want.backward()
    assert got.item() == pytest.approx(want.item(), rel=1e-10)
    assert torch.allclose(za.grad, zb.grad, atol=1e-12)
    assert want.item() > 0  # the case is not trivially zero


def test_weights_and_normaliser_by_hand():
    # Anchor 0 shares 2 labels with item 1, 1 label with item 2, none with item 3.
    y = torch.tensor([[1, 1, 0], [1, 1, 0], [1, 0, 0], [0, 0, 1]], dtype=torch.float64)
    rel = y @ y.T
    w = ndcg_weights(rel[:1], torch.tensor([0]))[0]
    z = 3 / math.log(2) + 1 / math.log(3)  # released code: (2^ra - 1)/ln 2 + (2^rb - 1)/ln 3
    assert w[1, 3].item() == pytest.approx(3 / z)
    assert w[1, 2].item() == pytest.approx(2 / z)
    assert w[2, 3].item() == pytest.approx(1 / z)
    assert w[3, 1].item() == pytest.approx(-3 / z)  # antisymmetric; masked out by r_i > r_j


def test_relaxed_distance_is_hamming_on_sign_codes():
    g = torch.Generator().manual_seed(1)
    a = torch.randint(0, 2, (9, 13), generator=g) * 2.0 - 1
    b = torch.randint(0, 2, (5, 13), generator=g) * 2.0 - 1
    hamming = (a[:, None, :] != b[None, :, :]).sum(-1).double()
    assert torch.equal(relaxed_hamming(a, b).double(), hamming)


def test_method_defaults_are_the_papers():
    m = build(METHODS, dict(type="dsrh"), n_bits=64)
    assert m.loss.margin == 5.0 and m.loss.alpha == 1.0
    assert m.loss.weighting == "ndcg" and m.loss.similarity_name == "graded"
    assert m.relaxation == "sigmoid" and m.bypass
    assert m.lr_mult == {"head.final.weight": 10.0, "head.lower": 2.5, "head.final.bias": 20.0}
    assert build(METHODS, dict(type="dsrh"), n_bits=32).loss.margin == 2.5  # 5 per 64 bits
    z = torch.tensor([[-3.0, 0.0, 2.0]])
    assert torch.allclose(m.relax(z, 0.0), 2 * torch.sigmoid(z) - 1)


def test_perfect_ranking_with_margin_costs_nothing():
    # Codes at Hamming distances 0 / 2 / 4 from the anchor for levels 2 / 1 / 0: margin 1 is met.
    y = torch.tensor([[1, 1], [1, 1], [1, 0], [0, 0]], dtype=torch.float64)
    b = torch.tensor([[1, 1, 1, 1], [1, 1, 1, 1], [1, -1, -1, 1], [-1, -1, -1, -1]], dtype=torch.float64)
    out = DSRHLoss(margin=1.0, alpha=0.0)(b, y)
    per_anchor, _ = DSRHLoss(margin=1.0).triplet_terms(b, y)
    assert per_anchor[0].item() == 0.0
    assert out["loss"].item() >= 0


def test_loss_on_explicit_tuples_matches_its_triplets_by_hand():
    """The released sampler's items: four slots each, three weighted triplets over them."""
    from hashbench.methods.dsrh_sampler import TRIPLETS
    from hashbench.sampling import Tuples

    g = torch.Generator().manual_seed(2)
    codes = torch.tanh(torch.randn(5, 4, 6, generator=g, dtype=torch.float64)).requires_grad_()
    w = torch.rand(5, 3, generator=g, dtype=torch.float64)
    loss = DSRHLoss(margin=1.5, alpha=0.3)
    index = torch.tensor([[4 * b + q, 4 * b + i, 4 * b + j] for b in range(5) for q, i, j in TRIPLETS])
    got = loss(codes.reshape(20, 6), torch.zeros(20, 2), torch.arange(20), tuples=Tuples(index, w.reshape(-1)))["loss"]
    want = 0
    for b in range(5):
        for t, (q, i, j) in enumerate(TRIPLETS):
            d_qi = (6 - (codes[b, q] * codes[b, i]).sum()) / 2
            d_qj = (6 - (codes[b, q] * codes[b, j]).sum()) / 2
            want = want + w[b, t] * torch.clamp(1.5 + d_qi - d_qj, min=0)
    want = want / 5 + 0.3 * 0.5 * (codes[:, 0].mean(0) ** 2).sum()
    assert got.item() == pytest.approx(want.item(), rel=1e-12)


def test_released_sampler_trains_end_to_end(tmp_path):
    import numpy as np

    from hashbench.model import DeepHasher
    from hashbench.registry import BACKBONES, DATASETS
    from hashbench.encode import encode_deep
    from hashbench.train import train_deep

    ds = build(DATASETS, dict(type="multidigits", n_train=48, n_query=8, n_database=16, cache_dir=str(tmp_path)))
    method = build(METHODS, dict(type="dsrh", sampler="released"), n_bits=8)
    model = DeepHasher(build(BACKBONES, dict(type="timm", name="test_resnet")), 8)
    logs = train_deep(method, model, ds.get("train"), dict(epochs=2, batch_size=16, optimizer="adamw", lr=1e-3),
                      torch.device("cpu"), 0)
    assert len(logs) == 2 and all(np.isfinite(l["loss"]) and l["triplet"] > 0 for l in logs)
    codes = encode_deep(model, ds.get("query"), torch.device("cpu"))
    assert codes.shape == (8, 8) and set(np.unique(codes)) <= {0, 1}
    with pytest.raises(Exception, match="sampler must be one of in_batch, released; got 'releasd'"):
        build(METHODS, dict(type="dsrh", sampler="releasd"), n_bits=8)
