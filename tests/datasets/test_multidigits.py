"""The embedded default dataset: determinism, label semantics, disjoint query handwriting, cache."""
import numpy as np
import pytest
from sklearn.datasets import load_digits

from hashbench.errors import HashbenchError
from hashbench.registry import DATASETS, build

SMALL = dict(type="multidigits", n_train=120, n_query=40, n_database=80)


def make(tmp_path, **kw):
    return build(DATASETS, {**SMALL, "cache_dir": str(tmp_path), **kw})


def test_same_parameters_same_canvases(tmp_path):
    a = make(tmp_path / "a")
    b = make(tmp_path / "b")
    for split in ("train", "query", "database"):
        assert np.array_equal(a.get(split).inputs.numpy(), b.get(split).inputs.numpy())
        assert np.array_equal(a.get(split).labels, b.get(split).labels)
    c = make(tmp_path / "c", seed=1)
    assert not np.array_equal(a.get("train").inputs.numpy(), c.get("train").inputs.numpy())


def test_labels_are_the_digits_drawn(tmp_path):
    ds = make(tmp_path)
    targets = load_digits().target
    for split in ("train", "query", "database"):
        inst, labels = ds.instances(split), ds.get(split).labels
        for row, lab in zip(inst, labels):
            drawn = {int(targets[i]) for i in row if i >= 0}
            assert set(np.flatnonzero(lab)) == drawn
            assert 1 <= len(drawn) <= 4 and len(drawn) == (row >= 0).sum()  # distinct digits
    x = ds.get("query").inputs.numpy()
    assert x.dtype == np.uint8 and x.shape[1:] == (3, 32, 32)
    # an empty cell is black, a drawn one is not
    inst = ds.instances("query")
    for c in range(len(x)):
        for k in range(4):
            cell = x[c, 0, (k // 2) * 16:(k // 2 + 1) * 16, (k % 2) * 16:(k % 2 + 1) * 16]
            assert (cell.max() > 0) == (inst[c, k] >= 0)


def test_query_handwriting_never_seen_in_training(tmp_path):
    ds = make(tmp_path)
    train = set(ds.instances("train").ravel()) - {-1}
    query = set(ds.instances("query").ravel()) - {-1}
    assert train and query and not train & query


def test_second_build_reads_the_cache(tmp_path, monkeypatch):
    first = make(tmp_path)
    assert first.cache_path.exists()
    import hashbench.datasets.multidigits as md

    monkeypatch.setattr(md, "generate", lambda **kw: pytest.fail("regenerated despite the cache"))
    again = make(tmp_path)
    assert np.array_equal(first.get("train").labels, again.get("train").labels)


def test_bad_parameters_are_refused(tmp_path):
    with pytest.raises(HashbenchError, match="max_digits"):
        make(tmp_path, max_digits=5)
    with pytest.raises(HashbenchError, match="has no parameter 'n_trian'; valid: n_train"):
        make(tmp_path, n_trian=3)


def test_processes_generating_the_same_cache_at_once_both_succeed(tmp_path, monkeypatch):
    """Under torchrun every process builds the dataset; on a fresh cache they all generate it and
    write the same file (a shared temporary name once made all but one fail)."""
    import threading

    both_written = threading.Barrier(2)
    savez = np.savez_compressed

    def savez_then_wait(file, **arrays):
        savez(file, **arrays)
        both_written.wait(timeout=30)  # neither renames before the other has written

    monkeypatch.setattr(np, "savez_compressed", savez_then_wait)
    built, errors = [], []

    def build_one():
        try:
            built.append(make(tmp_path))
        except Exception as e:  # noqa: BLE001 - collected for the assertion
            errors.append(e)

    threads = [threading.Thread(target=build_one) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == [] and len(built) == 2
    assert [p.name for p in tmp_path.iterdir()] == [built[0].cache_path.name]  # no temporary file left
    monkeypatch.undo()
    assert np.array_equal(make(tmp_path).get("train").labels, built[0].get("train").labels)


def _damage_truncate(path):
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _damage_garbage(path):
    path.write_bytes(b"not a zip file at all")


def _damage_drop_array(path):
    with np.load(path) as f:
        arrays = {k: f[k] for k in f.files if k != "query_y"}
    np.savez_compressed(path, **arrays)


def _damage_reshape(path):
    with np.load(path) as f:
        arrays = {k: f[k] for k in f.files}
    arrays["train_x"] = arrays["train_x"][:5]
    np.savez_compressed(path, **arrays)


@pytest.mark.parametrize("damage", [_damage_truncate, _damage_garbage, _damage_drop_array, _damage_reshape])
def test_a_damaged_cache_is_generated_again_with_a_warning(tmp_path, damage, capsys, caplog):
    """A cache cut short (full disk, killed copy) once failed every later build with a traceback."""
    import json
    import logging

    from hashbench.cli import main

    words = ["dataset=multidigits", f"cache_dir={tmp_path}", "n_train=120", "n_query=40", "n_database=80",
             "--json"]
    first = make(tmp_path)
    reference = {s: first.get(s).labels.copy() for s in ("train", "query", "database")}
    damage(first.cache_path)
    with caplog.at_level(logging.WARNING, logger="hashbench.datasets"):
        assert main(["data", "verify", *words]) == 0
    assert json.loads(capsys.readouterr().out)["splits"] == {"train": 120, "query": 40, "database": 80}
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "damaged" in warnings[0] and "generating it again" in warnings[0]
    assert "\n" not in warnings[0]
    caplog.clear()
    again = make(tmp_path)  # the regenerated file is whole: read without another warning
    assert not caplog.records
    for split, labels in reference.items():
        assert np.array_equal(again.get(split).labels, labels)


def test_n_val_carves_seeded_val_canvases_out_of_the_training_set(tmp_path):
    from hashbench.errors import HashbenchError
    from hashbench.registry import DATASETS, build

    kw = dict(type="multidigits", n_train=40, n_query=5, n_database=10, cache_dir=str(tmp_path))
    whole = build(DATASETS, kw)
    ds = build(DATASETS, dict(kw, n_val=8))
    assert "val" not in whole.splits() and ds.splits() == ("train", "query", "database", "val")
    train, val, full = ds.get("train"), ds.get("val"), whole.get("train")
    assert len(train) == 32 and len(val) == 8 and not set(train.ids) & set(val.ids)
    assert sorted([*train.ids, *val.ids], key=lambda s: int(s.split("/")[1])) == list(full.ids)
    rows = {i: k for k, i in enumerate(full.ids)}
    for split in (train, val):  # each canvas with its own labels and pixels, under its training id
        idx = [rows[i] for i in split.ids]
        assert np.array_equal(split.labels, full.labels[idx])
        assert np.array_equal(split[0][0], full[idx[0]][0])
    assert list(build(DATASETS, dict(kw, n_val=8)).get("val").ids) == list(val.ids)
    assert np.array_equal(ds.get("query").labels, whole.get("query").labels)
    with pytest.raises(HashbenchError, match="n_val=40 would take all 40"):
        build(DATASETS, dict(kw, n_val=40))
