"""backbone.input_size: the size a network takes comes from the backbone (timm's pretrained config,
torchvision's 224), reaches the resize, the standard augmentation's crop, the feature cache's key
and the code hash, and a size the model cannot take is refused before any work."""
import numpy as np
import pytest
import timm
import torch
from torch import nn
from torchvision.transforms import v2

from hashbench.augment import augmented, geometry
from hashbench.backbones import TimmBackbone, input_geometry
from hashbench.cli import main
from hashbench.config import build_run_config, parse_words
from hashbench.datasets.base import ArraySplit
from hashbench.errors import HashbenchError
from hashbench.feature_cache import transform_spec
from hashbench.model import DeepHasher
from hashbench.registry import BACKBONES, build
from hashbench.results import config_hash

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    """Randomly initialised timm weights saved as a user's checkpoint file, by model name."""
    root = tmp_path_factory.mktemp("weights")

    def save(name):
        path = root / f"{name}.pth"
        if not path.exists():
            torch.manual_seed(0)
            torch.save(timm.create_model(name).state_dict(), path)
        return str(path)

    return save


def split_of(n=4, side=32):
    g = np.random.default_rng(0)
    return ArraySplit(g.integers(0, 256, (n, 3, side, side), dtype=np.uint8), np.eye(n, 4, dtype=np.uint8))


def timm_geometry(**cfg):
    return input_geometry(dict(type="timm", **cfg))


def test_timm_takes_its_pretrained_size_with_weights_and_the_stored_images_without(weights):
    # test_resnet's pretrained config: 160 x 160, bilinear; test_convnext's: 160, bicubic.
    assert timm.get_pretrained_cfg("test_resnet").input_size == (3, 160, 160)
    assert timm_geometry(name="test_resnet") == (None, "bilinear")  # from scratch: as stored
    assert timm_geometry(name="test_resnet", checkpoint=weights("test_resnet")) == ((160, 160), "bilinear")
    assert timm_geometry(name="test_resnet", pretrained=True) == ((160, 160), "bilinear")
    assert timm_geometry(name="test_resnet", input_size="pretrained") == ((160, 160), "bilinear")
    assert timm_geometry(name="test_resnet", checkpoint=weights("test_resnet"), input_size="data") == (None, "bilinear")
    assert timm_geometry(name="test_resnet", input_size=96) == ((96, 96), "bilinear")
    assert timm_geometry(name="test_convnext", input_size="pretrained") == ((160, 160), "bicubic")
    assert timm_geometry(name="resnet50", pretrained=True) == ((224, 224), "bicubic")
    assert timm_geometry(name="vit_base_patch16_384") == ((384, 384), "bicubic")  # fixed: even from scratch


def test_a_fixed_input_size_refuses_another_size():
    with pytest.raises(HashbenchError, match=r"'test_vit' takes only 160x160 images .*input_size=96"):
        timm_geometry(name="test_vit", input_size=96)
    with pytest.raises(HashbenchError, match="takes only 160x160"):
        timm_geometry(name="test_vit", input_size="data")
    assert timm_geometry(name="test_vit", input_size=160) == ((160, 160), "bicubic")


def test_the_built_backbone_and_network_resize_with_the_named_interpolation(weights):
    backbone = build(BACKBONES, dict(type="timm", name="test_convnext", checkpoint=weights("test_convnext")))
    assert backbone.input_size == (3, 160, 160) and backbone.interpolation == "bicubic"
    net = DeepHasher(backbone, 8)
    x = torch.randint(0, 256, (2, 3, 32, 32), dtype=torch.uint8)
    want = nn.functional.interpolate(x.float() / 255, size=(160, 160), mode="bicubic", align_corners=False,
                                     antialias=True)
    want = (want - torch.tensor(backbone.mean).view(1, 3, 1, 1)) / torch.tensor(backbone.std).view(1, 3, 1, 1)
    assert torch.allclose(net.normalize(x), want, atol=1e-5)
    assert net.normalize(torch.zeros(1, 3, 160, 160, dtype=torch.uint8)).shape[-1] == 160  # already the size
    scratch = DeepHasher(build(BACKBONES, dict(type="timm", name="test_convnext")), 8)
    assert scratch.input_hw is None and scratch.normalize(x).shape[-1] == 32


def test_torchvision_input_size():
    assert build(BACKBONES, dict(type="torchvision", name="alexnet")).input_size == (3, 224, 224)
    assert build(BACKBONES, dict(type="torchvision", name="alexnet", input_size="data")).input_size is None
    assert build(BACKBONES, dict(type="torchvision", name="alexnet", input_size=128)).input_size == (3, 128, 128)
    with pytest.raises(HashbenchError, match="input_size"):
        build_run_config(parse_words(["backbone.type=torchvision", "backbone.input_size=32"]))


def test_the_feature_key_has_the_resize_only_where_the_network_resizes(weights):
    loaded = build(BACKBONES, dict(type="timm", name="test_resnet", checkpoint=weights("test_resnet")))
    scratch = build(BACKBONES, dict(type="timm", name="test_resnet"))
    assert "resize" not in transform_spec(scratch, split_of())
    assert transform_spec(loaded, split_of())["resize"] == dict(size=[160, 160], interpolation="bilinear",
                                                                 antialias=True)
    assert "resize" not in transform_spec(loaded, split_of(side=160))  # stored at the network's size


def hashes(*words):
    run = build_run_config(parse_words(["methods=dsrh,itq", *words]))
    return {name: config_hash(run.method_config(name)) for name in ("dsrh", "itq")}


def test_the_hash_holds_the_resolved_size_and_only_where_it_changed(weights):
    """The default config's hashes are pinned in test_config; torchvision's were computed by the
    code before backbone.input_size existed (the parent of the commit adding this file)."""
    tv = ["backbone.type=torchvision", "backbone.name=alexnet"]
    assert hashes(*tv) == {"dsrh": "d0eae530776b994cda5698c836109332a4e0dfcde77ca869fc5c6f6a698a5755",
                           "itq": "2ff7c97d366292367bf972ace4c62455a7a0a76fe0e5254db810a54a2bb5c1e1"}
    assert hashes(*tv, "backbone.input_size=224") == hashes(*tv) == hashes(*tv, "backbone.input_size=pretrained")
    assert hashes(*tv, "backbone.input_size=data") != hashes(*tv)
    assert hashes("backbone.input_size=data") == hashes() == hashes("backbone.input_size=auto")
    loaded = [f"backbone.checkpoint={weights('test_resnet')}"]
    assert hashes(*loaded) == hashes(*loaded, "backbone.input_size=160")  # the same network
    assert hashes(*loaded) != hashes(*loaded, "backbone.input_size=data")  # as it was before: trained anew


def test_a_record_from_before_config_hashes_is_hashed_at_the_size_it_was_trained_at(tmp_path, weights):
    """Such a record stores no backbone.input_size: it took the stored images, so it must not be
    read as ``auto`` (for a timm model with weights: its pretrained size, another network)."""
    import json

    from hashbench.results import ResultStore

    run = build_run_config(parse_words(["methods=dsrh", f"backbone.checkpoint={weights('test_resnet')}"]))
    mcfg = run.method_config("dsrh")
    assert "input_size" not in mcfg["backbone"]
    at = {size: {**mcfg, "backbone": {**mcfg["backbone"], "input_size": size}} for size in ("data", 160)}
    base = dict(method="dsrh", dataset="multidigits", bits=8, seed=0, metrics={"map": 0.5})
    (tmp_path / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in (
        {**base, "config": mcfg}, {**base, "config": at[160]}, {**base, "config": at["data"]})))
    old, new160, new_data = ResultStore(tmp_path).records()
    assert old["config_hash"] == new_data["config_hash"] == config_hash(at["data"])
    assert new160["config_hash"] == config_hash(mcfg) != old["config_hash"]


def test_the_standard_crop_is_the_networks_input_size():
    assert geometry(None) == ((256, 256), (224, 224))
    assert geometry((160, 160)) == ((183, 183), (160, 160)) and geometry((384, 384)) == ((439, 439), (384, 384))
    raw = split_of(2, 64)
    torch.manual_seed(0)
    assert augmented(raw, "standard", train=True, size=(160, 160))[0][0].shape == (3, 160, 160)
    want = v2.CenterCrop(160)(v2.Resize((183, 183), antialias=True)(raw[1][0]))
    assert torch.equal(augmented(raw, "standard", train=False, size=(160, 160))[1][0], want)


def test_a_run_trains_and_encodes_at_the_backbones_size(tmp_path, weights, monkeypatch):
    """With weights and the standard augmentation the network sees 160-pixel crops (no resize
    left for it), in training and when encoding; the run records the size in its config."""
    seen = []
    forward = TimmBackbone.forward
    monkeypatch.setattr(TimmBackbone, "forward", lambda self, x: seen.append(tuple(x.shape[-2:])) or forward(self, x))
    out = tmp_path / "out"
    status = main(["run", f"out={out}", "methods=dsrh", "bits=8", "epochs=1", "device=cpu", "dataset.n_train=16",
                   "dataset.n_query=4", "dataset.n_database=8", "train.batch_size=8", "train.augment=standard",
                   f"backbone.checkpoint={weights('test_resnet')}"])
    assert status == 0
    assert seen and set(seen) == {(160, 160)}
    assert '"input_size": [160, 160]' in (out / "results.jsonl").read_text()


def test_a_size_the_model_cannot_take_is_one_line_before_any_work(tmp_path, capsys, monkeypatch):
    import hashbench.runner as runner

    monkeypatch.setattr(runner.Runner, "_load_data", lambda self: pytest.fail("data loaded"))
    status = main(["run", f"out={tmp_path / 'out'}", "methods=dsrh", "backbone.name=test_vit",
                   "backbone.input_size=96", "device=cpu"])
    err = capsys.readouterr().err
    assert status == 2 and "Traceback" not in err, err
    lines = [ln for ln in err.splitlines() if ln.startswith("hashbench: error:")]
    assert len(lines) == 1 and "'test_vit' takes only 160x160 images" in lines[0], err
    assert not (tmp_path / "out" / "results.jsonl").exists()
