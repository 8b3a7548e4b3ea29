"""The released-code sampler against the rules of dsrh.md, checked item by item."""
import math

import numpy as np
import pytest

from hashbench.datasets.base import ArraySplit
from hashbench.errors import HashbenchError
from hashbench.methods.dsrh_sampler import TRIPLETS, ReleasedTriplets


def split_of(labels):
    labels = np.asarray(labels, np.uint8)
    return ArraySplit(np.zeros((len(labels), 3, 2, 2), np.uint8), labels)


LABELS = [[1, 1, 0], [1, 1, 0], [1, 0, 0], [0, 0, 1], [0, 0, 0], [1, 1, 1], [0, 1, 0]]


def test_anchor_repetition_and_unlabelled_never_anchor():
    s = ReleasedTriplets(split_of(LABELS), balance_count=6)
    counts = np.asarray(LABELS).sum(0)  # label counts 4, 4, 2
    want = []
    for i, row in enumerate(LABELS):
        if sum(row):
            rarest = min(counts[c] for c in range(3) if row[c])
            want += [i] * (6 // rarest + 1)
    # anchor 5 shares a label with everyone labelled, but item 4 (unlabelled) is its negative
    assert sorted(s.anchors.tolist()) == sorted(want)
    assert 4 not in s.anchors


def test_draws_follow_the_levels_and_weights():
    lab = np.asarray(LABELS)
    s = ReleasedTriplets(split_of(LABELS), seed=3)
    for k in range(len(s)):
        (q, a, b, neg), w = s.draw(k)
        r = lab @ lab[q]
        r[q] = -1
        assert r[neg] == 0 and r[a] == r.max() and q not in (a, neg)
        between = [(0 < v < r.max()) for v in r]
        if r.max() >= 2 and any(between):
            ra, rb = r[a], r[b]
            assert 0 < rb < ra
            z = (2 ** ra - 1) / math.log(2) + (2 ** rb - 1) / math.log(3)
            assert np.allclose(w, [(2 ** ra - 2 ** rb) / z, (2 ** ra - 1) / z, (2 ** rb - 1) / z])
        else:
            assert np.allclose(w, [0, math.log(2), 0])  # one triplet (q, x+, x-), weight ln 2
    assert TRIPLETS[1] == (0, 1, 3)


def test_draws_are_reproducible_per_epoch():
    s = ReleasedTriplets(split_of(LABELS), seed=1)
    first = [s.draw(k)[0].tolist() for k in range(len(s))]
    assert first == [s.draw(k)[0].tolist() for k in range(len(s))]
    s.set_epoch(1)
    assert first != [s.draw(k)[0].tolist() for k in range(len(s))]
    x, y, rows, w = s[0]
    assert x.shape == (4, 3, 2, 2) and y.shape == (4, 3) and w.shape == (3,)
    assert rows.tolist() == s.draw(0)[0].tolist()


def test_a_batch_unpacks_into_its_images_and_weighted_tuples():
    """Item b's slots become rows 4b..4b+3 of the image batch; its three triplets index them."""
    import torch

    s = ReleasedTriplets(split_of(LABELS), seed=2)
    items = [s[k] for k in range(3)]
    batch = [torch.stack([it[j] for it in items]) for j in range(4)]
    x, y, rows, tuples = s.unpack(batch)
    assert x.shape == (12, 3, 2, 2) and y.shape == (12, 3) and rows.shape == (12,)
    want = [[4 * b + i, 4 * b + j, 4 * b + k] for b in range(3) for i, j, k in TRIPLETS]
    assert tuples.index.tolist() == want
    assert torch.equal(tuples.weight, torch.cat([it[3] for it in items]))
    for b, (_, _, r, _) in enumerate(items):  # rows are the drawn training indices, in slot order
        assert rows[4 * b:4 * b + 4].tolist() == r.tolist()
        assert torch.equal(y[4 * b:4 * b + 4], torch.as_tensor(np.asarray(LABELS, np.float32)[r.numpy()]))


def test_no_negative_or_no_label_is_refused():
    with pytest.raises(HashbenchError, match="no anchor with both a negative"):
        ReleasedTriplets(split_of([[1, 0], [1, 1], [1, 0]]))
    with pytest.raises(HashbenchError, match="needs labelled training images"):
        ReleasedTriplets(split_of([[0, 0], [0, 0]]))


def test_epoch_keys_shards_each_global_batch_across_processes():
    import torch

    from hashbench.sampling import EpochKeys

    n, batch = 23, 8  # 2 full global batches; the ragged last 7 keys are dropped under DDP
    single = list(EpochKeys(n, torch.Generator().manual_seed(3)))
    shards = [list(EpochKeys(n, torch.Generator().manual_seed(3), rank=r, replicas=2, batch=batch)) for r in range(2)]
    assert [len(s) for s in shards] == [8, 8]
    for step in range(2):  # rank 0's share then rank 1's = the single-process global batch
        gathered = shards[0][4 * step:4 * step + 4] + shards[1][4 * step:4 * step + 4]
        assert gathered == single[batch * step:batch * (step + 1)]
    with pytest.raises(HashbenchError, match="divisible"):
        EpochKeys(n, torch.Generator(), rank=0, replicas=3, batch=8)
    with pytest.raises(HashbenchError, match="at most the 23 training items"):
        EpochKeys(n, torch.Generator(), rank=0, replicas=2, batch=24)
