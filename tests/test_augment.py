"""train.augment: torchvision's flip and crop per image, seeded; the evaluation geometry to match; the
same operations on the batch where it trains (train.augment_on=device), against torchvision per image."""
import json

import numpy as np
import pytest
import torch
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as F

from hashbench.augment import (BatchAugment, augmented, crop_each, eval_transform, flip_each, on_device,
                               resize_uint8, train_transform)
from hashbench.cli import main
from hashbench.datasets.base import ArraySplit


def split_of(n=6, side=256):
    g = np.random.default_rng(0)
    return ArraySplit(g.integers(0, 256, (n, 3, side, side), dtype=np.uint8), np.eye(n, 4, dtype=np.uint8))


def test_flip_is_a_per_image_coin_and_seeded():
    s = augmented(split_of(40, 8), "flip", train=True)
    torch.manual_seed(3)
    first = [s[i][0] for i in range(40)]
    raw = split_of(40, 8)
    flipped = [bool(torch.equal(x, raw[i][0].flip(-1))) for i, x in enumerate(first)]
    kept = [bool(torch.equal(x, raw[i][0])) for i, x in enumerate(first)]
    assert all(f or k for f, k in zip(flipped, kept)) and 5 < sum(flipped) < 35  # each image its own coin
    torch.manual_seed(3)
    assert all(torch.equal(a, s[i][0]) for i, a in enumerate(first))
    assert s.labels is raw.labels or np.array_equal(s.labels, raw.labels)


def test_standard_crops_224_from_256_and_centre_crops_at_evaluation():
    raw = split_of(4, 256)
    train, test = augmented(raw, "standard", train=True), augmented(raw, "standard", train=False)
    torch.manual_seed(0)
    x = train[1][0]
    assert x.shape == (3, 224, 224) and x.dtype == torch.uint8
    full = raw[1][0]
    windows = [full[:, i:i + 224, j:j + 224] for i in range(33) for j in range(33)]
    assert any(torch.equal(x, w) or torch.equal(x, w.flip(-1)) for w in windows)  # a crop of the image, maybe flipped
    assert torch.equal(test[1][0], full[:, 16:240, 16:240])
    small = augmented(split_of(2, 64), "standard", train=False)[0][0]  # stored smaller: resized to 256 first
    want = v2.CenterCrop(224)(v2.Resize((256, 256), antialias=True)(split_of(2, 64)[0][0]))
    assert torch.equal(small, want)
    assert train_transform("none", 256) is None and eval_transform("flip", 256) is None
    assert augmented(raw, "flip", train=False) is raw


def test_a_run_with_augmentation_records_it_and_refuses_unknown_kinds(tmp_path, capsys):
    tiny = ["dataset.n_train=48", "dataset.n_query=8", "dataset.n_database=16", "device=cpu", "bits=8", "epochs=1",
            "methods=dsrh"]
    assert main(["run", f"out={tmp_path / 'a'}", "train.augment=flip", *tiny]) == 0
    assert main(["run", f"out={tmp_path / 'b'}", *tiny]) == 0
    a, b = (json.loads((tmp_path / d / "results.jsonl").read_text()) for d in "ab")
    assert a["config"]["train"]["augment"] == "flip" and a["config_hash"] != b["config_hash"]
    assert a["train_log"][0]["loss"] != b["train_log"][0]["loss"]  # the flips changed what it trained on
    assert main(["run", f"out={tmp_path / 'c'}", "train.augment=crop", *tiny]) == 2
    assert "train.augment must be one of none, flip, standard" in capsys.readouterr().err


def test_an_interrupted_augmented_run_resumes_to_the_same_codes(tmp_path, interrupt_after_first_epoch):
    words = ["run", "methods=dsrh", "epochs=2", "train.augment=flip", "dataset.n_train=48", "dataset.n_query=8",
             "dataset.n_database=16", "device=cpu", "bits=8"]
    assert main([*words, f"out={tmp_path / 'a'}"]) == 130
    interrupt_after_first_epoch()
    assert main([*words, f"out={tmp_path / 'a'}"]) == 0
    assert main([*words, f"out={tmp_path / 'b'}"]) == 0
    a, b = (json.loads((tmp_path / d / "results.jsonl").read_text()) for d in "ab")
    assert [l["loss"] for l in a["train_log"]] == [l["loss"] for l in b["train_log"]]
    codes = [np.load(tmp_path / d / r["codes"])["database"] for d, r in (("a", a), ("b", b))]
    assert np.array_equal(*codes)


def test_the_batch_crop_and_flip_are_torchvisions_per_image():
    """crop_each / flip_each on a batch equal v2's crop and horizontal flip image by image."""
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (7, 3, 20, 24), dtype=torch.uint8, generator=g)
    top, left = torch.randint(0, 20 - 9 + 1, (7,), generator=g), torch.randint(0, 24 - 11 + 1, (7,), generator=g)
    flip = torch.rand(7, generator=g) < 0.5
    got = flip_each(crop_each(x, top, left, (9, 11)), flip)
    for b in range(7):
        want = F.crop(x[b], int(top[b]), int(left[b]), 9, 11)
        assert torch.equal(got[b], F.horizontal_flip(want) if flip[b] else want)
    y = resize_uint8(x, (30, 27))
    want = torch.stack([F.resize(i, [30, 27], antialias=True) for i in x])
    assert y.dtype == torch.uint8 and (y.int() - want.int()).abs().max() <= 1


def test_batch_augment_draws_every_position_seeded_per_epoch_and_process():
    aug = BatchAugment("standard", (16, 16), seed=5)  # crop 16 of 18 (256/224 of 16)
    assert (aug.resize, aug.crop) == ((18, 18), (16, 16))
    first = aug.params(2000, 18, 18)
    top, left, flip = first
    assert set(top.tolist()) == set(left.tolist()) == {0, 1, 2} and 900 < int(flip.sum()) < 1100
    aug.start_epoch(0)
    assert all(torch.equal(a, b) for a, b in zip(aug.params(2000, 18, 18), first))  # an epoch's draws, again
    aug.start_epoch(1)
    assert not torch.equal(aug.params(2000, 18, 18)[0], top)
    other = BatchAugment("standard", (16, 16), seed=5, rank=1)
    assert not torch.equal(other.params(2000, 18, 18)[0], top)  # each DDP process its own draws
    x = torch.randint(0, 256, (4, 3, 32, 32), dtype=torch.uint8)
    out = BatchAugment("standard", (16, 16), seed=0)(x)
    assert out.shape == (4, 3, 16, 16) and out.dtype == torch.uint8  # resized to 18 first, then cropped
    flips = BatchAugment("flip", None, seed=0)(x)
    assert all(torch.equal(f, i) or torch.equal(f, i.flip(-1)) for f, i in zip(flips, x))
    assert on_device("flip", "auto", "cuda") and not on_device("flip", "auto", "cpu")
    assert on_device("standard", "device", "cpu") and not on_device("none", "device", "cuda")


def test_augment_on_device_trains_resumes_and_keeps_the_hash(tmp_path, capsys, interrupt_after_first_epoch):
    """train.augment_on=device on the CPU (as on CUDA): other draws than the loader's, the same
    config hash, an interrupted run resumed to the same codes; an unknown place is one line."""
    words = ["run", "methods=dsrh", "epochs=2", "train.augment=standard", "dataset.n_train=48", "dataset.n_query=8",
             "dataset.n_database=16", "device=cpu", "bits=8"]
    assert main([*words, "train.augment_on=device", f"out={tmp_path / 'a'}"]) == 130
    interrupt_after_first_epoch()
    assert main([*words, "train.augment_on=device", f"out={tmp_path / 'a'}"]) == 0
    assert main([*words, "train.augment_on=device", f"out={tmp_path / 'b'}"]) == 0
    assert main([*words, f"out={tmp_path / 'c'}"]) == 0  # auto on the CPU: the loader
    a, b, c = (json.loads((tmp_path / d / "results.jsonl").read_text()) for d in "abc")
    assert [l["loss"] for l in a["train_log"]] == [l["loss"] for l in b["train_log"]]
    assert np.array_equal(*(np.load(tmp_path / d / r["codes"])["database"] for d, r in (("a", a), ("b", b))))
    assert a["config_hash"] == c["config_hash"] and a["train_log"][0]["loss"] != c["train_log"][0]["loss"]
    capsys.readouterr()
    assert main([*words, "train.augment_on=gpu", f"out={tmp_path / 'd'}"]) == 2
    err = capsys.readouterr().err
    assert "train.augment_on must be one of auto, loader, device" in err and err.count("\n") == 1


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_batch_augment_on_cuda_draws_and_crops_as_on_the_cpu():
    x = torch.randint(0, 256, (16, 3, 256, 256), dtype=torch.uint8)
    cpu, gpu = (BatchAugment("standard", None, seed=3) for _ in range(2))
    want = cpu(x)
    got = gpu(x.cuda())
    assert got.is_cuda and torch.equal(got.cpu(), want)
