"""train.augment: torchvision's flip and crop per image, seeded; the evaluation geometry to match."""
import json

import numpy as np
import torch
from torchvision.transforms import v2

from hashbench.augment import augmented, eval_transform, train_transform
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
