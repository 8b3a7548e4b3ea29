"""No result silently wrong, no traceback for a damaged folder: saved codes are verified before use,
damaged records and artefacts are named and skipped, paths stay inside out=, a full disk or an
unwritable out= is one line, and queries without a relevant item are announced."""
import errno
import hashlib
import json
import logging
import shutil

import numpy as np
import pytest

from hashbench.cli import main
from hashbench.results import ResultStore, read_records

TINY = ["dataset.n_train=48", "dataset.n_query=12", "dataset.n_database=40", "device=cpu", "bits=8"]


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("HASHBENCH_CACHE", str(tmp_path / "cache"))


def one_line_error(capsys, status, *needles):
    err = capsys.readouterr().err
    assert status == 2, err
    lines = [ln for ln in err.splitlines() if ln.startswith("hashbench: error:")]
    assert len(lines) == 1 and "Traceback" not in err, err
    for n in needles:
        assert n in lines[0], lines[0]
    return lines[0]


def two_runs(out):
    assert main(["run", f"out={out}", "methods=random", "seeds=0,1", *TINY]) == 0
    return read_records(out / "results.jsonl")


# ------------------------------------------------------------------------------ saved codes
def test_codes_copied_over_another_run_are_refused_by_eval(tmp_path, capsys):
    out = tmp_path / "out"
    r0, r1 = two_runs(out)
    codes0, codes1 = out / r0["codes"], out / r1["codes"]
    shutil.copy(codes1, codes0)  # seed 1's codes under seed 0's name, manifest untouched
    capsys.readouterr()
    status = main(["eval", f"out={out}", "metrics=p@10"])
    captured = capsys.readouterr()
    assert status == 2 and "Traceback" not in captured.err
    assert f"{codes0} does not have the sha256 its manifest" in captured.err
    recs = read_records(out / "results.jsonl")
    # seed 1 is still scored and recorded; seed 0 is not scored from the wrong codes
    assert [(r["seed"], sorted(r["metrics"])) for r in recs[2:]] == [(1, ["p@10"])]


def test_a_manifest_copied_with_its_codes_is_refused_too(tmp_path, capsys):
    out = tmp_path / "out"
    r0, r1 = two_runs(out)
    for suffix in (".npz", ".json"):
        shutil.copy((out / r1["codes"]).with_suffix(suffix), (out / r0["codes"]).with_suffix(suffix))
    capsys.readouterr()
    assert main(["eval", f"out={out}", "metrics=p@10", "seeds=0"]) == 2
    assert "is the manifest of another run (seed 1, expected 0): copied over?" in capsys.readouterr().err


def test_a_run_retrains_instead_of_rescoring_damaged_codes(tmp_path, capsys):
    out = tmp_path / "out"
    r0, _ = two_runs(out)
    path = out / r0["codes"]
    path.write_bytes(path.read_bytes()[: len(path.read_bytes()) // 2])  # truncated
    capsys.readouterr()
    assert main(["run", f"out={out}", "methods=random", "seeds=0", "eval.metrics=map,p@10", *TINY]) == 0
    text = capsys.readouterr().out
    assert "not reused, training anew: random 8 bits seed 0: saved codes refused:" in text
    assert "does not have the sha256 its manifest" in text
    last = read_records(out / "results.jsonl")[-1]
    assert last.get("reevaluated_from") is None and last["metrics"]["map"] == r0["metrics"]["map"]


@pytest.mark.parametrize("damage", ["truncated codes", "broken manifest", "manifest a list"])
def test_damaged_codes_are_named_and_skipped_by_eval(tmp_path, capsys, damage):
    out = tmp_path / "out"
    r0, _ = two_runs(out)
    codes = out / r0["codes"]
    if damage == "truncated codes":
        codes.write_bytes(codes.read_bytes()[:40])
    elif damage == "broken manifest":
        codes.with_suffix(".json").write_text('{"format": 1, "sha')
    else:
        codes.with_suffix(".json").write_text("[1, 2]")
    capsys.readouterr()
    line = one_line_error(capsys, main(["eval", f"out={out}", "metrics=p@10"]), "1 stored run left out")
    assert str(codes.with_suffix(".npz" if damage == "truncated codes" else ".json")) in line
    assert [r["seed"] for r in read_records(out / "results.jsonl")[2:]] == [1]


def test_plot_leaves_out_runs_with_damaged_codes(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    out = tmp_path / "out"
    r0, _ = two_runs(out)
    (out / r0["codes"]).write_bytes(b"not a zip file at all")
    capsys.readouterr()
    assert main(["plot", f"out={out}"]) == 0
    err = capsys.readouterr().err
    assert "no usable saved codes for 1 runs" in err and "Traceback" not in err
    curves = json.loads(next((out / "figures").glob("*-curves.json")).read_text())
    assert [c["seeds"] for c in curves["curves"]] == [[1]]


# ------------------------------------------------------------------------------ records
def test_damaged_records_are_named_and_skipped(tmp_path, capsys, caplog):
    out = tmp_path / "out"
    r0, r1 = two_runs(out)
    bad = [{**r0, "bits": "abc"}, {**r0, "metrics": [0.5]}, {**r0, "metrics": {"map": "high"}},
           {**r0, "config_hash": "../../../outside/x"}, {**r0, "eval": ["x"]}, [1, 2]]
    with open(out / "results.jsonl", "a") as f:
        for rec in bad:
            f.write(json.dumps(rec) + "\n")
    with caplog.at_level(logging.WARNING, logger="hashbench.results"):
        recs = read_records(out / "results.jsonl")
    assert len(recs) == 2
    assert [m for m in caplog.messages if "a damaged record" in m] == [
        f"{out / 'results.jsonl'}: ignoring line {i}, a damaged record: {why}" for i, why in zip(range(3, 9), [
            "bits 'abc' is not a whole number >= 0", "metrics is a list, not a mapping of metric to value",
            "metric map has the value 'high', not a number",
            "config_hash '../../../outside/x' is not a sha256 hex digest", "eval is a list, not a mapping",
            "a JSON list, not a record"])]
    for command in (["table", f"out={out}"], ["eval", f"out={out}", "metrics=p@10"]):
        capsys.readouterr()
        assert main(command) == 0
        assert "Traceback" not in capsys.readouterr().err


def test_a_record_cannot_point_eval_outside_out(tmp_path, capsys):
    out = tmp_path / "out"
    (r0,) = read_records_of_one_run(out)
    outside = tmp_path / "outside"
    outside.mkdir()
    escape = "../../outside/x"
    for suffix in (".npz", ".json"):  # a planted pair the escaping hash would name
        shutil.copy((out / r0["codes"]).with_suffix(suffix), outside / f"x-8-0{suffix}")
    (out / "results.jsonl").write_text(json.dumps({**r0, "config_hash": escape}) + "\n")
    capsys.readouterr()
    one_line_error(capsys, main(["eval", f"out={out}", "metrics=p@10"]), "no results in")
    store = ResultStore(out)
    with pytest.raises(Exception, match="is not a sha256 hex digest"):
        store.codes_path(escape, 8, 0)


def read_records_of_one_run(out):
    assert main(["run", f"out={out}", "methods=random", *TINY]) == 0
    return read_records(out / "results.jsonl")


def test_results_jsonl_being_a_folder_is_one_line(tmp_path, capsys):
    out = tmp_path / "out"
    (out / "results.jsonl").mkdir(parents=True)
    for command in (["run", f"out={out}", "methods=random", *TINY], ["table", f"out={out}"],
                    ["eval", f"out={out}"]):
        capsys.readouterr()
        one_line_error(capsys, main(command), "results.jsonl is a folder, not a results file")


def test_a_full_disk_while_appending_a_record_is_one_line_and_leaves_no_partial_line(tmp_path, capsys,
                                                                                     monkeypatch):
    import hashbench.atomic as atomic

    out = tmp_path / "out"
    read_records_of_one_run(out)
    before = (out / "results.jsonl").read_bytes()
    real = atomic.os.write

    def full(fd, data):  # the disk fills after 100 bytes of the new line
        if len(data) > 100:
            real(fd, bytes(data[:100]))
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(atomic.os, "write", full)
    capsys.readouterr()
    one_line_error(capsys, main(["run", f"out={out}", "methods=random", "seeds=1", *TINY]),
                   "the disk is full", "results.jsonl")
    monkeypatch.setattr(atomic.os, "write", real)
    assert (out / "results.jsonl").read_bytes() == before  # no torn line left behind


# ------------------------------------------------------------------------------ out=
@pytest.mark.parametrize("where", ["a file", "under a file", "unwritable"])
def test_an_unusable_out_is_one_line_before_any_work(tmp_path, capsys, monkeypatch, where):
    import hashbench.runner as runner

    target = tmp_path / "f"
    target.write_text("x")
    out = {"a file": target, "under a file": target / "sub" / "out", "unwritable": tmp_path / "ro"}[where]
    if where == "unwritable":
        import hashbench.results as results

        out.mkdir()

        def refuse(*args, **kwargs):
            raise PermissionError(errno.EACCES, "Permission denied")

        monkeypatch.setattr(results.tempfile, "TemporaryFile", refuse)  # root may write anywhere
    monkeypatch.setattr(runner.Runner, "_load_data", lambda self: pytest.fail("data loaded"))
    why = {"a file": "is a file, not a folder", "under a file": f"lies under {target}, which is a file",
           "unwritable": "cannot be written"}[where]
    one_line_error(capsys, main(["run", f"out={out}", "methods=random", *TINY]), f"out={out}", why)


# ------------------------------------------------------------------------------ no relevant item
def test_queries_without_a_relevant_item_are_announced(tmp_path, capsys):
    rng = np.random.default_rng(0)
    arrays = {}
    for split, n, col in (("train", 30, 0), ("query", 6, 0), ("database", 20, 1)):
        arrays[f"{split}_features"] = rng.standard_normal((n, 8)).astype(np.float32)
        labels = np.zeros((n, 2), np.uint8)
        labels[:, col] = 1
        if split == "query":
            labels[:2] = [0, 1]  # two queries do share a label with the database
        arrays[f"{split}_labels"] = labels
    np.savez(tmp_path / "f.npz", **arrays)
    out = tmp_path / "out"
    capsys.readouterr()
    assert main(["run", f"out={out}", "methods=lsh", "bits=8", "dataset=features",
                 f"data_root={tmp_path / 'f.npz'}"]) == 0
    text = capsys.readouterr().out
    note = "4 of 6 queries have no relevant item in the database: they count as 0 in every metric"
    assert f"lsh 8 bits seed 0: warning: {note}" in text
    assert text.count(note) == 2  # the run's line and the table footer
    assert main(["table", f"out={out}"]) == 0
    assert note in capsys.readouterr().out


# ------------------------------------------------------------------------------ plugins, weights
def test_a_plugin_taking_a_builtin_name_is_one_line_naming_both(tmp_path, capsys):
    plugin = tmp_path / "dup_lsh.py"
    plugin.write_text("from hashbench.method import ClassicHasher\nfrom hashbench.registry import METHODS\n\n\n"
                      "@METHODS.register_module(name='lsh')\nclass Mine(ClassicHasher):\n    '''mine'''\n")
    one_line_error(capsys, main(["run", f"out={tmp_path / 'out'}", "methods=lsh", f"plugins={plugin}", *TINY]),
                   f"registers method 'lsh' at {plugin}:5", "already defined at", "methods/lsh.py")


@pytest.mark.parametrize("content", ["garbage", "hostile", "wrong model"])
def test_a_bad_backbone_checkpoint_is_one_line_before_any_work(tmp_path, capsys, monkeypatch, content):
    import torch

    import hashbench.runner as runner

    path = tmp_path / "weights.pt"
    if content == "garbage":
        path.write_bytes(np.random.default_rng(0).bytes(4000))
    elif content == "hostile":
        torch.save({"x": Hostile(tmp_path / "pwned")}, path)
    else:
        torch.save({"conv.weight": torch.zeros(3)}, path)
    if content != "wrong model":
        monkeypatch.setattr(runner.Runner, "_load_data", lambda self: pytest.fail("data loaded"))
    status = main(["run", f"out={tmp_path / 'out'}", "methods=dsrh", "backbone.name=test_resnet",
                   f"backbone.checkpoint={path}", *TINY])
    if content == "wrong model":  # readable tensors: refused when the backbone is built, still one line
        line = one_line_error(capsys, status, "does not fit timm model 'test_resnet'")
    else:
        line = one_line_error(capsys, status, f"backbone checkpoint '{path}' refused")
        assert ("unpickling it would call code" in line) == (content == "hostile")
    assert not (tmp_path / "pwned").exists()


class Hostile:
    """Unpickling it runs a shell command."""

    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        import os

        return (os.system, (f"touch {self.path}",))


def test_codes_digest_matches_the_file(tmp_path):
    """The manifest's sha256 is the file's: the check eval relies on is not vacuous."""
    out = tmp_path / "out"
    (r0,) = read_records_of_one_run(out)
    manifest = json.loads((out / r0["codes"]).with_suffix(".json").read_text())
    assert manifest["sha256"] == hashlib.sha256((out / r0["codes"]).read_bytes()).hexdigest()
    assert manifest["data"] == r0["data"]


# ------------------------------------------------------------------------------ checkpoints
@pytest.mark.usefixtures("one_torch_thread")
def test_a_corrupted_checkpoint_is_set_aside_and_the_run_trains_from_scratch(tmp_path, capsys, caplog,
                                                                             interrupt_after_first_epoch):
    words = ["methods=dsrh", "backbone.name=test_resnet", "epochs=2", *TINY]
    out = tmp_path / "out"
    assert main(["run", f"out={out}", *words]) == 130  # killed after epoch 1, its checkpoint written
    (ckpt,) = (out / "checkpoints").glob("*.pt")
    data = bytearray(ckpt.read_bytes())
    mid = len(data) // 2
    data[mid:mid + 2000] = bytes(b ^ 0xFF for b in data[mid:mid + 2000])
    ckpt.write_bytes(bytes(data))
    interrupt_after_first_epoch()  # no more kills
    capsys.readouterr()
    with caplog.at_level(logging.WARNING, logger="hashbench.train"):
        assert main(["run", f"out={out}", *words]) == 0
    (warning,) = [r.getMessage() for r in caplog.records if r.name == "hashbench.train"]
    assert "is damaged: its contents do not match the sha256 written with it" in warning
    assert f"moved to {ckpt.name}.bad, training from scratch" in warning
    assert "resuming from epoch" not in capsys.readouterr().err
    assert main(["run", f"out={tmp_path / 'ref'}", *words]) == 0  # never interrupted
    got, ref = read_records(out / "results.jsonl")[-1], read_records(tmp_path / "ref" / "results.jsonl")[-1]
    assert got["metrics"] == ref["metrics"]
    assert [e["loss"] for e in got["train_log"]] == [e["loss"] for e in ref["train_log"]]
    assert (ckpt.parent / f"{ckpt.name}.bad").read_bytes() == bytes(data)


@pytest.mark.usefixtures("one_torch_thread")
def test_a_resumed_run_says_so_and_matches_an_uninterrupted_one(tmp_path, capsys, interrupt_after_first_epoch):
    words = ["methods=dsrh", "backbone.name=test_resnet", "epochs=2", *TINY]
    out = tmp_path / "out"
    assert main(["run", f"out={out}", *words]) == 130
    interrupt_after_first_epoch()
    capsys.readouterr()
    assert main(["run", f"out={out}", *words]) == 0
    assert "dsrh 8 bits seed 0 resuming from epoch 1 of 2 (checkpoint " in capsys.readouterr().err
    assert main(["run", f"out={tmp_path / 'ref'}", *words]) == 0
    assert read_records(out / "results.jsonl")[-1]["metrics"] == \
        read_records(tmp_path / "ref" / "results.jsonl")[-1]["metrics"]


def test_a_read_only_results_folder_can_be_tabled_but_not_evaluated_into(tmp_path, capsys, monkeypatch):
    import hashbench.results as results

    out = tmp_path / "out"
    read_records_of_one_run(out)

    def refuse(*args, **kwargs):
        raise PermissionError(errno.EACCES, "Permission denied")

    monkeypatch.setattr(results.tempfile, "TemporaryFile", refuse)  # as if out/ were read-only
    capsys.readouterr()
    assert main(["table", f"out={out}"]) == 0
    assert "| random" in capsys.readouterr().out
    one_line_error(capsys, main(["eval", f"out={out}", "metrics=p@10"]), f"out={out} cannot be written")
    one_line_error(capsys, main(["table", f"out={tmp_path / 'out' / 'results.jsonl'}"]), "is a file, not a folder")
