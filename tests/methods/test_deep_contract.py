"""The deep-method contract, checked on every registered DeepMethod and variant (new ones are picked
up), and the method configs of the pairwise/triplet baselines and DSRH's variants."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from hashbench.errors import HashbenchError
from hashbench.method import DeepMethod, method_class
from hashbench.registry import BACKBONES, DATASETS, METHODS, build, entries, summary

DEEP = {name: obj for name, obj in entries(METHODS).items() if issubclass(method_class(obj), DeepMethod)}
N_BITS = 16
CONFIGS = Path(__file__).resolve().parents[2] / "configs" / "methods"


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A tiny seeded multidigits dataset (64 train, 16 query canvases)."""
    return build(DATASETS, dict(type="multidigits", n_train=64, n_query=16, n_database=64,
                                cache_dir=str(tmp_path_factory.mktemp("multidigits"))))


class _Split:
    """Just what ``begin`` reads of a training split: its labels."""

    def __init__(self, labels):
        self.labels = labels.numpy()

    def __len__(self):
        return len(self.labels)


def _loss(method, codes, labels):
    """The trainer's one call form on a batch that is the whole training set (rows 0..B-1)."""
    method.begin(_Split(labels))
    return method.compute_loss(codes, labels, torch.arange(len(codes)))


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
    from hashbench.encode import encode_deep
    from hashbench.train import train_deep

    method = build(METHODS, dict(type=name, n_bits=N_BITS))
    torch.manual_seed(0)
    backbone = build(BACKBONES, dict(type="timm", name="test_resnet"))
    model = DeepHasher.for_method(backbone, method)
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


@pytest.mark.parametrize("name", sorted(DEEP))
def test_every_deep_method_has_a_config_that_names_it(name):
    assert _method_cfg(name) == dict(type=name)
    assert isinstance(build(METHODS, dict(type=name, n_bits=N_BITS)), method_class(DEEP[name]))


@pytest.mark.parametrize("variant, check", [
    ("triplet", lambda m: m.loss.weighting == "none" and m.loss.similarity_name == "binary"),
    ("dsrh_nobypass", lambda m: m.bypass is False and "head.lower" not in m.lr_mult),
    ("dsrh_unweighted", lambda m: m.loss.weighting == "none" and m.loss.similarity_name == "graded"),
    ("dsrh_binary", lambda m: m.loss.similarity_name == "binary" and m.loss.weighting == "ndcg"),
    ("dsrh_nobalance", lambda m: m.loss.alpha == 0.0),
    ("dsrh_tanh", lambda m: m.relaxation == "tanh"),
    ("dsrh_released", lambda m: m.sampler == "released"),
])
def test_dsrh_variants_change_only_what_they_fix(variant, check):
    import inspect

    entry = DEEP[variant]
    method = build(METHODS, dict(type=variant, n_bits=N_BITS))
    default = build(METHODS, dict(type="dsrh", n_bits=N_BITS))
    assert type(method) is type(default) and check(method) and not check(default)
    # the variant's parameters are DSRH's without the fixed ones, and a fixed one cannot be set
    fixed = set(entry.fixed)
    assert set(inspect.signature(entry).parameters) == set(inspect.signature(type(default)).parameters) - fixed
    with pytest.raises(HashbenchError, match=f"{variant} fixes {sorted(fixed)[0]}="):
        entry(N_BITS, **{sorted(fixed)[0]: entry.fixed[sorted(fixed)[0]]})
    with pytest.raises(HashbenchError, match=f"method {variant!r} has no parameter {sorted(fixed)[0]!r}"):
        build(METHODS, dict(type=variant, n_bits=N_BITS, **{sorted(fixed)[0]: entry.fixed[sorted(fixed)[0]]}))


@pytest.mark.parametrize("name", sorted(DEEP))
def test_state_survives_a_state_dict_round_trip(name):
    """A method's state (a bank, centres...) is its module state: what a checkpoint saves and loads."""
    g = torch.Generator().manual_seed(1)
    labels = (torch.rand(10, 5, generator=g) < 0.4).float()
    method = build(METHODS, dict(type=name, n_bits=8))
    _loss(method, torch.tanh(torch.randn(10, 8, generator=g)), labels)
    state = {k: v.clone() for k, v in method.state_dict().items()}
    fresh = build(METHODS, dict(type=name, n_bits=8))
    fresh.begin(_Split(labels))
    fresh.load_state_dict(state)
    assert all(torch.equal(fresh.state_dict()[k], v) for k, v in state.items())


def test_a_loss_that_takes_no_tuples_refuses_them():
    from hashbench.sampling import Tuples

    method = build(METHODS, dict(type="dsh", n_bits=8))
    tuples = Tuples(torch.zeros(1, 3, dtype=torch.long), torch.ones(1))
    with pytest.raises(HashbenchError, match="DSH: its loss DSHLoss cannot take tuples"):
        method.compute_loss(torch.zeros(2, 8), torch.ones(2, 3), torch.arange(2), tuples)
