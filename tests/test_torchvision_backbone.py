"""The torchvision family: AlexNet and VGG-16 cut at fc7, fc6 and fc7 as the hash layer reads them."""
import pytest
import torch
import torchvision

from hashbench.errors import HashbenchError
from hashbench.model import DeepHasher
from hashbench.registry import BACKBONES, build


def saved_weights(tmp_path, name, seed=0):
    """A randomly initialised torchvision model's state_dict (fc8 included), saved as a user would."""
    torch.manual_seed(seed)
    model = getattr(torchvision.models, name)(weights=None)
    path = tmp_path / f"{name}.pth"
    torch.save(model.state_dict(), path)
    return model.eval(), path


@pytest.mark.parametrize("name", ["alexnet", "vgg16"])
def test_fc6_and_fc7_equal_a_direct_forward_pass_of_the_loaded_weights(tmp_path, name):
    reference, path = saved_weights(tmp_path, name)
    backbone = build(BACKBONES, dict(type="torchvision", name=name, checkpoint=str(path))).eval()
    x = torch.randn(2, 3, 64 if name == "alexnet" else 32, 64 if name == "alexnet" else 32)
    with torch.no_grad():
        pooled = torch.flatten(reference.avgpool(reference.features(x)), 1)
        layers = list(reference.classifier)
        fc6_at = next(i for i, m in enumerate(layers) if isinstance(m, torch.nn.Linear))
        fc6 = torch.relu(layers[fc6_at](pooled))
        fc7 = reference.classifier[:6](pooled) if name == "alexnet" else reference.classifier[:5](pooled)
        got7, got6 = backbone(x)
    assert backbone.dims == (4096, 4096)
    assert torch.allclose(got6, fc6, atol=1e-6) and torch.allclose(got7, fc7, atol=1e-6)


def test_training_mode_drops_out_between_fc6_and_fc7_only(tmp_path):
    """fc6 reaches the hash layer before its dropout; fc7 changes with the dropout mask."""
    _, path = saved_weights(tmp_path, "alexnet")
    backbone = build(BACKBONES, dict(type="torchvision", name="alexnet", checkpoint=str(path)))
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        eval7, eval6 = backbone.eval()(x)
        backbone.train()
        torch.manual_seed(1)
        train7, train6 = backbone(x)
    assert torch.allclose(train6, eval6, atol=1e-6)  # no dropout on pool5 or before fc6's output
    assert not torch.allclose(train7, eval7)


def test_a_file_of_another_network_is_refused_in_one_line(tmp_path):
    _, path = saved_weights(tmp_path, "vgg16")
    with pytest.raises(HashbenchError, match="does not fit torchvision alexnet: .*not in the file"):
        build(BACKBONES, dict(type="torchvision", name="alexnet", checkpoint=str(path)))
    with pytest.raises(HashbenchError, match="does not exist"):
        build(BACKBONES, dict(type="torchvision", name="alexnet", checkpoint=str(tmp_path / "none.pth")))


def test_the_network_resizes_to_the_backbones_input_and_normalises():
    torch.manual_seed(0)
    backbone = build(BACKBONES, dict(type="torchvision", name="alexnet"))
    net = DeepHasher(backbone, 8).eval()
    x = torch.randint(0, 256, (2, 3, 32, 32), dtype=torch.uint8)
    want = torch.nn.functional.interpolate(x.float() / 255, size=(224, 224), mode="bilinear", align_corners=False,
                                           antialias=True)
    want = (want - torch.tensor(backbone.mean).view(1, 3, 1, 1)) / torch.tensor(backbone.std).view(1, 3, 1, 1)
    assert torch.allclose(net.normalize(x), want, atol=1e-6)
    assert net(x).shape == (2, 8)


def test_cli_lists_and_validates_the_family(capsys):
    from hashbench.cli import main

    assert main(["list", "backbones"]) == 0
    assert "torchvision" in capsys.readouterr().out
    assert main(["run", "backbone.type=torchvision", "backbone.name=resnet18", "methods=dsrh"]) == 2
    err = capsys.readouterr().err
    assert "backbone.name" in err and "alexnet, vgg16" in err


def test_changing_the_backbone_type_does_not_inherit_the_old_types_keys(tmp_path):
    """On the command line and in a method's config: timm's lower_stage/pretrained do not reach
    torchvision. A file inheriting through _base_ follows mmengine: _delete_=True replaces a block."""
    from hashbench.config import build_run_config, parse_words

    words = ["backbone.type=torchvision", "backbone.name=vgg16", "methods=dsrh"]
    assert build_run_config(parse_words(words)).cfg["backbone"] == {"type": "torchvision", "name": "vgg16"}
    same = build_run_config(parse_words(["backbone.name=resnet18", "methods=dsrh"])).cfg["backbone"]
    assert same["type"] == "timm" and same["lower_stage"] == -2  # the same type still merges key by key
    leaf = tmp_path / "leaf.py"
    leaf.write_text(f'_base_ = ["{(__import__("hashbench.config").config.CONFIG_ROOT / "default.py").as_posix()}"]\n'
                    'backbone = dict(type="torchvision", name="alexnet", _delete_=True)\n')
    assert build_run_config(parse_words([f"config={leaf}", "methods=dsrh"])).cfg["backbone"] == \
        {"type": "torchvision", "name": "alexnet"}
    from hashbench.config import _merge

    assert _merge({"backbone": {"type": "timm", "lower_stage": -2}},
                  {"backbone": {"type": "torchvision", "name": "vgg16"}}) == {"backbone": {"type": "torchvision",
                                                                                          "name": "vgg16"}}


def test_normalising_in_place_touches_only_tensors_it_made():
    torch.manual_seed(0)
    net = DeepHasher(build(BACKBONES, dict(type="timm", name="test_resnet")), 8)
    x = torch.randint(0, 256, (2, 3, 16, 16), dtype=torch.uint8)
    want = (x.float().div(255) - net.mean) / net.std
    assert torch.equal(net.normalize(x), want)  # the same numbers as the out-of-place formula
    f = x.float() / 255
    kept = f.clone()
    assert torch.equal(net.normalize(f), want) and torch.equal(f, kept)  # a caller's float tensor is left alone
