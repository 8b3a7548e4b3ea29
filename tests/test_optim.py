"""Parameter groups by name pattern (mmengine's custom_keys rule), and the schedule's drop."""
import pytest
import torch
from torch import nn

from hashbench.errors import HashbenchError
from hashbench.optim import param_groups, schedule


def _named():
    net = nn.ModuleDict(dict(backbone=nn.Linear(3, 3), head=nn.ModuleDict(dict(final=nn.Linear(3, 2),
                                                                                lower=nn.Linear(3, 2, bias=False)))))
    extra = nn.Parameter(torch.zeros(2))
    return [*net.named_parameters(), ("method.loss.centres", extra)]


def _lr_of(groups):
    return {id(p): (g["lr"], g["weight_decay"], g["outside"]) for g in groups for p in g["params"]}


def test_the_longest_matching_pattern_wins_and_unmatched_parameters_keep_the_base_rate():
    named = _named()
    groups = param_groups(named, 0.1, 0.01, {"head": 2.0, "head.final.weight": 10.0,
                                               "centres": dict(lr_mult=5.0, decay_mult=0.0)})
    got = _lr_of(groups)
    want = {"backbone.weight": (0.1, 0.01, False), "backbone.bias": (0.1, 0.01, False),
            "head.final.weight": (1.0, 0.01, True), "head.final.bias": (0.2, 0.01, True),
            "head.lower.weight": (0.2, 0.01, True), "method.loss.centres": (0.5, 0.0, True)}
    for name, p in named:  # a plain loop over the rule: longest substring match
        assert got[id(p)] == pytest.approx(want[name]), name
    assert sum(len(g["params"]) for g in groups) == len(named)


def test_ties_in_length_go_to_the_pattern_listed_first():
    named = _named()
    groups = param_groups(named, 1.0, 0.0, {"final": 3.0, "weight": 7.0})  # both match; "weight" is longer
    assert _lr_of(groups)[id(dict(named)["head.final.weight"])][0] == 7.0  # longer wins
    groups = param_groups(named, 1.0, 0.0, {"fina": 3.0, "ight": 7.0})  # equal length: first listed
    assert _lr_of(groups)[id(dict(named)["head.final.weight"])][0] == 3.0


def test_a_pattern_matching_nothing_or_a_bad_setting_is_refused():
    with pytest.raises(HashbenchError, match="lr_mult pattern 'haed' matches no trainable parameter"):
        param_groups(_named(), 1.0, 0.0, {"haed": 10.0})
    with pytest.raises(HashbenchError, match=r"lr_mult\['head'\] must be a number"):
        param_groups(_named(), 1.0, 0.0, {"head": "ten"})
    with pytest.raises(HashbenchError, match="unknown key 'lr'"):
        param_groups(_named(), 1.0, 0.0, {"head": dict(lr=3)})


def test_dsrh_groups_are_the_released_multipliers():
    from hashbench.model import DeepHasher
    from hashbench.registry import BACKBONES, METHODS, build

    method = build(METHODS, dict(type="dsrh"), n_bits=8)
    model = DeepHasher(build(BACKBONES, dict(type="timm", name="test_resnet")), 8)
    groups = param_groups(model.named_parameters(), 1e-3, 5e-4, method.lr_mult)
    lrs = _lr_of(groups)
    assert lrs[id(model.head.final.weight)][0] == pytest.approx(1e-2)
    assert lrs[id(model.head.lower.weight)][0] == pytest.approx(2.5e-3)
    assert lrs[id(model.head.final.bias)][0] == pytest.approx(2e-2)
    assert all(lrs[id(p)][:2] == (1e-3, 5e-4) and not lrs[id(p)][2] for p in model.backbone.parameters())


def test_the_drop_lowers_only_the_rates_outside_the_backbone():
    named = _named()
    groups = param_groups(named, 1.0, 0.0, {"head": 10.0})
    opt = torch.optim.SGD([{k: v for k, v in g.items() if k != "outside"} for g in groups], lr=1.0)
    sched = schedule(opt, groups, cosine=False, steps=10, drop_at=0.5)
    seen = []
    for _ in range(10):
        seen.append([g["lr"] for g in opt.param_groups])
        opt.step()
        sched.step()
    outside = [g["outside"] for g in groups]
    for step, lrs in enumerate(seen):
        for lr, g, out in zip(lrs, groups, outside):
            base = 10.0 if g["name"] == "head" else 1.0
            assert lr == pytest.approx(base * (0.1 if out and step >= 5 else 1.0))
