"""The deep-method contract, checked on every registered DeepMethod (new ones are picked up), and the
method configs of the pairwise/triplet baselines and DSRH ablations."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from hashbench.method import DeepMethod
from hashbench.registry import BACKBONES, DATASETS, METHODS, build, entries, summary

DEEP = {name: obj for name, obj in entries(METHODS).items()
        if isinstance(obj, type) and issubclass(obj, DeepMethod)}
N_BITS = 16
CONFIGS = Path(__file__).resolve().parents[2] / "configs" / "methods"


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A tiny seeded multidigits dataset (64 train, 16 query canvases)."""
    return build(DATASETS, dict(type="multidigits", n_train=64, n_query=16, n_database=64,
                                cache_dir=str(tmp_path_factory.mktemp("multidigits"))))


def _loss(method, codes, labels):
    """``method.loss`` on a batch; a loss over the whole training set gets this batch as that set."""
    if getattr(method.loss, "needs_index", False):
        if not hasattr(method.loss, "bank"):
            method.loss.bind(labels, codes.shape[1])
        return method.loss(codes, labels, index=torch.arange(len(codes)))
    return method.loss(codes, labels)


def test_the_baselines_are_registered():
    assert {"dsrh", "dpsh", "dsh", "hashnet", "triplet", "dtsh"} <= set(DEEP)


@pytest.mark.parametrize("name", sorted(DEEP))
def test_builds_and_loss_is_a_finite_scalar_with_grad(name):
    method = build(METHODS, dict(type=name, n_bits=N_BITS))
    assert method.n_bits == N_BITS and summary(DEEP[name])
    g = torch.Generator().manual_seed(0)
    z = torch.randn(12, N_BITS, generator=g, requires_grad=True)
    labels = (torch.rand(12, 10, generator=g) < 0.3).float()
    labels[torch.arange(12), torch.randint(0, 10, (12,), generator=g)] = 1
    for progress in (0.0, 0.5, 1.0):
        codes = method.relax(z, progress)
        assert codes.shape == z.shape
        out = _loss(method, codes, labels)
        assert out["loss"].ndim == 0 and out["loss"].requires_grad and torch.isfinite(out["loss"])
        assert all(not v.requires_grad for k, v in out.items() if k != "loss")
        z.grad = None
        out["loss"].backward()
        assert torch.isfinite(z.grad).all() and z.grad.abs().sum() > 0


@pytest.mark.parametrize("name", sorted(DEEP))
@pytest.mark.parametrize("value", [1.0, 50.0])
@pytest.mark.parametrize("progress", [0.0, 1.0])
def test_saturated_inputs_give_finite_loss_and_gradient(name, value, progress):
    method = build(METHODS, dict(type=name, n_bits=8))
    labels = torch.tensor([[1, 1, 0, 0], [1, 0, 0, 0], [0, 1, 1, 0], [0, 0, 0, 1], [1, 1, 1, 0], [0, 0, 1, 1]],
                          dtype=torch.float32)
    signs = torch.where(torch.rand(6, 8, generator=torch.Generator().manual_seed(0)) > 0.5, 1.0, -1.0)
    z = (signs * value).requires_grad_()  # saturated pre-activations
    out = _loss(method, method.relax(z, progress), labels)
    out["loss"].backward()
    assert torch.isfinite(out["loss"]) and torch.isfinite(z.grad).all()
    codes = signs.clone().requires_grad_()  # exactly ±1 relaxed codes
    out = _loss(method, codes, labels)
    out["loss"].backward()
    assert torch.isfinite(out["loss"]) and torch.isfinite(codes.grad).all()


@pytest.mark.parametrize("name", sorted(DEEP))
def test_trains_a_few_steps_and_encodes(name, tiny):
    from hashbench.model import DeepHasher
    from hashbench.train import encode_deep, train_deep

    method = build(METHODS, dict(type=name, n_bits=N_BITS))
    torch.manual_seed(0)
    backbone = build(BACKBONES, dict(type="timm", name="test_resnet"))
    model = DeepHasher(backbone, N_BITS, bypass=method.bypass)
    cfg = dict(epochs=1, batch_size=32, optimizer="adamw", lr=1e-3)
    logs = train_deep(method, model, tiny.get("train"), cfg, torch.device("cpu"), seed=0, label=name)
    assert len(logs) == 1 and all(np.isfinite(v) for v in logs[0].values())
    assert all(torch.isfinite(p).all() for p in model.parameters())
    codes = encode_deep(model, tiny.get("query"), torch.device("cpu"))
    assert codes.shape == (16, N_BITS) and codes.dtype == np.uint8
    assert set(np.unique(codes)) <= {0, 1}


def _method_cfg(name):
    from mmengine.config import Config

    return dict(Config.fromfile(str(CONFIGS / f"{name}.py")).method)


@pytest.mark.parametrize("name", ["dpsh", "dsh", "hashnet", "triplet", "dtsh"])
def test_baseline_config_builds_its_method(name):
    cfg = _method_cfg(name)
    assert cfg == dict(type=name)
    assert isinstance(build(METHODS, dict(cfg, n_bits=N_BITS)), DEEP[name])


@pytest.mark.parametrize("config, check", [
    ("dsrh_nobypass", lambda m: m.bypass is False),
    ("dsrh_unweighted", lambda m: m.loss.weighting == "none" and m.loss.similarity_name == "graded"),
    ("dsrh_binary", lambda m: m.loss.similarity_name == "binary" and m.loss.weighting == "ndcg"),
    ("dsrh_nobalance", lambda m: m.loss.alpha == 0.0),
    ("dsrh_tanh", lambda m: m.relaxation == "tanh"),
])
def test_dsrh_ablation_configs_change_one_thing(config, check):
    cfg = _method_cfg(config)
    assert cfg["type"] == "dsrh"
    method = build(METHODS, dict(cfg, n_bits=N_BITS))
    assert check(method)
    default = build(METHODS, dict(type="dsrh", n_bits=N_BITS))
    assert not check(default)
