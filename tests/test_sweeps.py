"""Sweeps that survive: atomic records with config hashes, skip on rerun, resume after an
interruption, saved codes, checkpoints, and re-evaluation without retraining."""
import hashlib
import json
import logging
import os
from pathlib import Path

import numpy as np
import pytest

import hashbench.runner as runner_mod
import hashbench.stored as stored_mod
from hashbench.cli import main
from hashbench.config import build_run_config, parse_words
from hashbench.metrics import evaluate
from hashbench.atomic import atomic_append_line
from hashbench.results import (ResultStore, canonical_json, code_config, config_hash, latest,
                               read_records, run_key)

TINY = ["dataset.n_train=64", "dataset.n_query=16", "dataset.n_database=48", "device=cpu",
        "classic.features=pixels"]
THREE = ["methods=lsh", "bits=8", "seeds=0,1,2", *TINY]  # three runs of a classic method: fast


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("HASHBENCH_CACHE", str(tmp_path / "cache"))


def records(out):
    return read_records(out / "results.jsonl")


def keys(recs):
    return [(r["method"], r["bits"], r["seed"]) for r in recs]


class Interrupt:
    """Wraps a function; raises KeyboardInterrupt on its ``at``-th call; counts calls."""

    def __init__(self, fn, at):
        self.fn, self.at, self.calls = fn, at, []

    def __call__(self, *args, **kwargs):
        self.calls.append(args)
        if len(self.calls) == self.at:
            raise KeyboardInterrupt
        return self.fn(*args, **kwargs)


def count_run_one(monkeypatch):
    calls = []
    real = runner_mod.Runner.run_one

    def spy(self, name, mcfg, bits, seed):
        calls.append((name, bits, seed))
        return real(self, name, mcfg, bits, seed)

    monkeypatch.setattr(runner_mod.Runner, "run_one", spy)
    return calls


# ------------------------------------------------------------------------------ config hash
def test_config_hash_is_sha256_of_the_canonical_code_config():
    cfg = build_run_config(parse_words(["methods=dsrh,lsh", "epochs=2"]))
    deep, classic = cfg.method_config("dsrh"), cfg.method_config("lsh")
    part = {k: deep[k] for k in ("method", "backbone", "train", "dataset")}
    expected = hashlib.sha256(json.dumps(part, sort_keys=True, separators=(",", ":")).encode()).hexdigest()
    assert config_hash(deep) == expected and len(expected) == 64
    assert set(code_config(classic)) == {"method", "dataset", "classic", "backbone"}
    assert canonical_json({"b": 1, "a": [1, 2]}) == canonical_json({"a": (1, 2), "b": 1}) == '{"a":[1,2],"b":1}'

    other = build_run_config(parse_words(["methods=dsrh,lsh", "epochs=3", "eval.ties=index", "eval.metrics=map",
                                          "out=elsewhere", "device=cpu", "bits=8", "seeds=5"]))
    # epochs change deep codes only; evaluation, output folder, device, bits and seeds are not hashed
    assert config_hash(other.method_config("dsrh")) != config_hash(deep)
    assert config_hash(other.method_config("lsh")) == config_hash(classic)
    assert config_hash(build_run_config(parse_words(["methods=lsh", "method.center=false"])).method_config("lsh")) \
        != config_hash(classic)


# ------------------------------------------------------------------------------ atomic records
def test_concurrent_writers_of_one_file_do_not_collide(tmp_path):
    """Two DDP processes filling the same cache file at once: each writes its own temporary file
    (a shared temporary name made one process's rename fail), and the reader sees a whole file."""
    import threading

    from hashbench.atomic import atomic_write

    path, both_writing, errors = tmp_path / "cache.npz", threading.Barrier(2), []

    def writer(text):
        def write(tmp):
            assert tmp.endswith(".npz")  # the target's suffix, for writers that go by it
            Path(tmp).write_text(text)
            both_writing.wait(timeout=10)  # both temporary files exist before either is renamed
        try:
            atomic_write(path, write)
        except Exception as e:  # noqa: BLE001 - collected for the assertion
            errors.append(e)

    threads = [threading.Thread(target=writer, args=(t,)) for t in ("first", "second")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == [] and path.read_text() in ("first", "second")
    assert [p.name for p in tmp_path.iterdir()] == ["cache.npz"]


def test_append_is_one_write_and_survives_a_torn_last_line(tmp_path, monkeypatch, caplog):
    path = tmp_path / "results.jsonl"
    rec = dict(method="a", dataset="d", bits=8, seed=0, metrics={"map": 0.5}, train_log=[{"x": "y" * 20000}])
    writes = []
    real_write = os.write
    monkeypatch.setattr(os, "write", lambda fd, data: writes.append(len(data)) or real_write(fd, data))
    atomic_append_line(path, rec)
    assert len(writes) == 1 and writes[0] == len(json.dumps(rec)) + 1  # one write of the whole line (> 8 KiB)
    monkeypatch.undo()

    # a crash while writing leaves a partial line without newline
    with open(path, "ab") as f:
        f.write(json.dumps({**rec, "seed": 1}).encode()[:40])
    with caplog.at_level(logging.WARNING, logger="hashbench.results"):
        assert keys(read_records(path)) == [("a", 8, 0)]
    assert "truncated last line" in caplog.text
    atomic_append_line(path, {**rec, "seed": 2})  # starts on a fresh line: the torn one stays isolated
    assert keys(read_records(path)) == [("a", 8, 0), ("a", 8, 2)]


def test_latest_merges_metrics_per_run_and_conventions():
    base = dict(method="m", dataset="d", bits=8, seed=0, config_hash="h", eval=dict(ties="expected"))
    recs = [{**base, "metrics": {"map": 0.1, "p@10": 0.2}, "run_id": 1},
            {**base, "metrics": {"map": 0.3}, "run_id": 2},
            {**base, "metrics": {"map": 0.9}, "eval": dict(ties="index"), "run_id": 3},
            {**base, "seed": 1, "metrics": {"map": 0.4}, "run_id": 4}]
    merged = latest(recs)
    assert [(r["seed"], r["eval"]["ties"], r["metrics"], r["run_id"]) for r in merged] == [
        (0, "expected", {"map": 0.3, "p@10": 0.2}, 2), (0, "index", {"map": 0.9}, 3), (1, "expected", {"map": 0.4}, 4)]


def test_codes_round_trip_with_manifest(tmp_path):
    rng = np.random.default_rng(0)
    q, d = rng.integers(0, 2, (5, 13), dtype=np.uint8), rng.integers(0, 2, (9, 13), dtype=np.uint8)
    ql, dl = rng.integers(0, 2, (5, 4)), rng.integers(0, 2, (9, 4))
    store = ResultStore(tmp_path)
    chash = "ab" * 32
    info = dict(method="lsh", dataset="d", bits=13, seed=3, config_hash=chash)
    manifest = store.save_codes(info, q, d, ql, dl)
    assert manifest["shapes"] == dict(query=[5, 13], database=[9, 13], query_labels=[5, 4], database_labels=[9, 4])
    assert manifest["bit_order"] == "big" and manifest["method"] == "lsh"
    raw = np.load(tmp_path / "codes" / f"{chash}-13-3.npz")
    assert raw["query"].shape == (5, 2) and raw["query"].dtype == np.uint8  # packed: 13 bits in 2 bytes
    assert np.array_equal(np.unpackbits(raw["query"], axis=1, count=13), q)
    back = store.load_codes(chash, 13, 3)
    for name, want in dict(query=q, database=d, query_labels=ql, database_labels=dl).items():
        assert np.array_equal(back[name], want)
    assert json.loads((tmp_path / "codes" / f"{chash}-13-3.json").read_text())["sha256"] == \
        hashlib.sha256((tmp_path / "codes" / f"{chash}-13-3.npz").read_bytes()).hexdigest()
    assert not list((tmp_path / "codes").glob(".*tmp*"))


# ------------------------------------------------------------------------------ skip and force
def test_rerun_skips_what_is_done_and_force_recomputes(tmp_path, capsys, monkeypatch):
    out = tmp_path / "out"
    assert main(["run", f"out={out}", *THREE]) == 0
    first = records(out)
    assert keys(first) == [("lsh", 8, 0), ("lsh", 8, 1), ("lsh", 8, 2)]
    assert all(r["config_hash"] == first[0]["config_hash"] for r in first)
    assert all((out / r["codes"]).exists() for r in first)
    capsys.readouterr()

    calls = count_run_one(monkeypatch)
    assert main(["run", f"out={out}", *THREE]) == 0
    printed = capsys.readouterr().out
    assert calls == [] and records(out) == first
    assert "3 of 3 runs already done" in printed and printed.count("skipped:") == 3

    assert main(["run", f"out={out}", "force=true", *THREE]) == 0
    assert calls == [("lsh", 8, 0), ("lsh", 8, 1), ("lsh", 8, 2)]
    again = records(out)
    assert len(again) == 6 and [r["metrics"] for r in again[3:]] == [r["metrics"] for r in first]
    assert len(latest(again)) == 3  # tables show one entry per run

    # another seed extends the sweep; only it runs
    calls.clear()
    assert main(["run", f"out={out}", *THREE[:2], "seeds=0,1,2,3", *TINY]) == 0
    assert calls == [("lsh", 8, 3)]


# ------------------------------------------------------------------------------ interruptions
def test_interrupted_evaluation_resumes_without_duplicates_or_lost_records(tmp_path, capsys, monkeypatch):
    out = tmp_path / "out"
    broken = Interrupt(stored_mod.evaluate, at=2)
    monkeypatch.setattr(stored_mod, "evaluate", broken)
    assert main(["run", f"out={out}", *THREE]) == 130  # KeyboardInterrupt inside the 2nd run's evaluation
    assert "the same command resumes" in capsys.readouterr().err
    done = records(out)
    assert keys(done) == [("lsh", 8, 0)]  # no partial record of the 2nd run
    assert not list(out.glob("tables-*"))

    monkeypatch.setattr(stored_mod, "evaluate", broken.fn)
    calls = count_run_one(monkeypatch)
    assert main(["run", f"out={out}", *THREE]) == 0
    printed = capsys.readouterr().out
    final = records(out)
    assert keys(final) == [("lsh", 8, 0), ("lsh", 8, 1), ("lsh", 8, 2)]  # exactly 3, no duplicate
    assert final[0] == done[0]  # the first is not recomputed
    assert calls == [("lsh", 8, 2)]  # the 2nd had saved its codes: re-scored, not retrained
    assert final[1]["reevaluated_from"] == done[0]["run_id"] and "re-scored saved codes" in printed

    # the same results as an uninterrupted sweep
    assert main(["run", f"out={tmp_path / 'clean'}", *THREE]) == 0
    assert [r["metrics"] for r in records(tmp_path / "clean")] == [r["metrics"] for r in final]


def test_interrupted_training_and_torn_record_resume(tmp_path, capsys, monkeypatch):
    out = tmp_path / "out"
    real = runner_mod.Runner.run_one
    broken = Interrupt(lambda *a: real(*a), at=2)
    monkeypatch.setattr(runner_mod.Runner, "run_one", lambda self, *a: broken(self, *a))
    assert main(["run", f"out={out}", *THREE]) == 130
    assert keys(records(out)) == [("lsh", 8, 0)]
    first = records(out)[0]

    # simulate a crash in the middle of writing a record: a torn last line
    with open(out / "results.jsonl", "ab") as f:
        f.write(b'{"method": "lsh", "dataset": "multidigits", "bits": 8, "se')
    monkeypatch.setattr(runner_mod.Runner, "run_one", real)
    calls = count_run_one(monkeypatch)
    assert main(["run", f"out={out}", *THREE]) == 0
    final = records(out)
    assert keys(final) == [("lsh", 8, 0), ("lsh", 8, 1), ("lsh", 8, 2)] and final[0] == first
    assert calls == [("lsh", 8, 1), ("lsh", 8, 2)]
    assert len({run_key(r) for r in final}) == 3


def test_deep_runs_train_with_a_checkpoint_that_is_deleted_once_recorded(tmp_path, monkeypatch):
    out = tmp_path / "out"
    real = runner_mod.train_deep
    seen = []

    def resumable(method, model, split, cfg, device, seed, label="", *, checkpoint=None, **_):
        seen.append((checkpoint, os.path.exists(checkpoint)))
        if len(seen) == 1:  # first attempt: one "epoch" saved, then the machine goes down
            with open(checkpoint, "wb") as f:
                f.write(b"state")
            raise KeyboardInterrupt
        return real(method, model, split, cfg, device, seed, label)

    monkeypatch.setattr(runner_mod, "train_deep", resumable)
    words = ["run", f"out={out}", "methods=dsrh", "bits=8", "epochs=1", *TINY[:4]]
    assert main(words) == 130
    chash = config_hash(build_run_config(parse_words(words[1:])).method_config("dsrh"))
    ckpt = out / "checkpoints" / f"{chash}-8-0.pt"
    assert seen == [(str(ckpt), False)] and ckpt.exists() and records(out) == []
    assert main(words) == 0
    assert seen[1] == (str(ckpt), True)  # the rerun resumes from it
    assert not ckpt.exists() and keys(records(out)) == [("dsrh", 8, 0)]
    assert records(out)[0]["config_hash"] == chash


# ------------------------------------------------------------------------------ re-evaluation
def test_eval_rescores_saved_codes_without_training(tmp_path, capsys, monkeypatch):
    out = tmp_path / "out"
    assert main(["run", f"out={out}", "methods=lsh,random", "bits=8,12", *TINY]) == 0
    before = records(out)
    capsys.readouterr()

    def no_training(*a, **k):
        raise AssertionError("eval must not train")

    monkeypatch.setattr(runner_mod.Runner, "run_one", no_training)
    assert main(["eval", f"out={out}", "metrics=map,p@5", "eval.ties=index", "methods=lsh"]) == 0
    printed = capsys.readouterr().out
    assert "scored 2 of 2 stored runs" in printed and "without retraining" in printed
    new = records(out)[len(before):]
    assert keys(new) == [("lsh", 8, 0), ("lsh", 12, 0)]
    assert all(r["eval"]["ties"] == "index" and set(r["metrics"]) == {"map", "p@5"} for r in new)
    assert "| p@5 " in printed and "ties: index" in printed

    # oracle: evaluate() on the unpacked codes straight from the .npz
    for r in new:
        z = np.load(out / r["codes"])
        q, d = (np.unpackbits(z[s], axis=1, count=r["bits"]) for s in ("query", "database"))
        want = evaluate(q, d, z["query_labels"], z["database_labels"], metrics=["map", "p@5"], ties="index")
        assert r["metrics"] == pytest.approx(want, abs=1e-12)

    # nothing new to compute: nothing appended; force recomputes
    n = len(records(out))
    assert main(["eval", f"out={out}", "metrics=map,p@5", "eval.ties=index", "methods=lsh"]) == 0
    assert len(records(out)) == n and "2 already had every metric" in capsys.readouterr().out
    assert main(["eval", f"out={out}", "metrics=map,p@5", "eval.ties=index", "methods=lsh", "force=true"]) == 0
    assert len(records(out)) == n + 2

    # a sweep asking for a new metric re-scores from the codes too
    monkeypatch.setattr(runner_mod.Runner, "run_one", no_training)
    assert main(["run", f"out={out}", "methods=lsh,random", "bits=8,12", "eval.metrics=map,p@3", *TINY]) == 0
    assert "4 to re-score from saved codes" in capsys.readouterr().out


@pytest.fixture(scope="module")
def one_run(tmp_path_factory):
    """An out folder with one finished lsh run (read only)."""
    root = tmp_path_factory.mktemp("one_run")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HASHBENCH_CACHE", str(root / "cache"))
        assert main(["run", f"out={root / 'out'}", "methods=lsh", "bits=8", *TINY]) == 0
    return root / "out"


@pytest.mark.parametrize("args,message", [
    (["eval", "out=OUT", "metric=map"], "unknown key 'metric'; valid: metrics"),
    (["eval", "out=OUT", "eval.tie=index"], "unknown key 'eval.tie'; valid: eval.ties"),
    (["eval", "out=OUT", "eval.ties=sorted"], "unknown tie policy 'sorted'; valid: expected, index"),
    (["eval", "out=OUT", "metrics=mapp"], "unknown metric 'mapp'"),
    (["eval", "out=OUT", "methods=dsrh"], "no stored result has method 'dsrh'; stored: lsh"),
    (["eval", "out=EMPTY"], "no results in"),
    (["run", "force=maybe"], "force must be true or false (also yes/no, on/off, 1/0); got 'maybe'"),
])
def test_eval_errors_are_one_line(one_run, tmp_path, capsys, args, message):
    out = one_run
    args = [a.replace("OUT", str(out)).replace("EMPTY", str(tmp_path / "empty")) for a in args]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith("hashbench: error: ") and message in err and err.count("\n") == 1, err


def test_a_deep_run_interrupted_after_an_epoch_resumes_from_its_checkpoint(tmp_path, interrupt_after_first_epoch):
    words = ["methods=dsrh", "bits=8", "epochs=2", *TINY[:4]]
    out = tmp_path / "out"
    assert main(["run", f"out={out}", *words]) == 130
    assert records(out) == [] and len(list((out / "checkpoints").glob("*.pt"))) == 1
    stop_interrupting = interrupt_after_first_epoch
    stop_interrupting()
    assert main(["run", f"out={out}", *words]) == 0
    (rec,) = records(out)
    assert [e["epoch"] for e in rec["train_log"]] == [1, 2] and not list((out / "checkpoints").glob("*.pt"))
    assert main(["run", f"out={tmp_path / 'clean'}", *words]) == 0
    assert records(tmp_path / "clean")[0]["metrics"] == rec["metrics"]  # as if never interrupted


def test_records_from_before_config_hashes_count_as_done(tmp_path, monkeypatch, capsys):
    out = tmp_path / "out"
    words = ["run", f"out={out}", "methods=dsrh", "bits=8", "epochs=1", *TINY[:4]]
    assert main(words) == 0
    (rec,) = records(out)
    old = {k: v for k, v in rec.items() if k not in ("config_hash", "eval", "codes")}
    old["config"] = {k: v for k, v in rec["config"].items() if k != "classic"}  # what older versions stored
    (out / "results.jsonl").write_text(json.dumps(old) + "\n")
    calls = count_run_one(monkeypatch)
    assert main(words) == 0
    assert calls == [] and "1 of 1 runs already done" in capsys.readouterr().out


# ------------------------------------------------------------------------------ out/.lock: eval only

def test_an_eval_into_a_busy_out_stops_and_a_sweep_shares_it(tmp_path, capsys, monkeypatch):
    """``out/.lock`` now guards re-scoring only: a sweep into a folder another process holds goes
    on (its runs are claimed one by one), an eval stops at once and changes nothing."""
    import subprocess
    import sys

    out = tmp_path / "out"
    assert main(["run", f"out={out}", *THREE[:2], "seeds=0", *TINY]) == 0
    before = (out / "results.jsonl").read_bytes()
    capsys.readouterr()
    holder = subprocess.Popen(  # another process holding the folder, as a running eval does
        [sys.executable, "-c", "import sys; from hashbench.results import ResultStore\n"
         "with ResultStore(sys.argv[1]).lock():\n    print('held', flush=True); sys.stdin.read()", str(out)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline() == "held\n"
        assert main(["eval", f"out={out}", "metrics=ndcg@10"]) == 2
        err = capsys.readouterr().err
        assert err.startswith("hashbench: error: ") and err.count("\n") == 1, err
        assert f"out={out} is in use by hashbench pid {holder.pid}" in err, err
        assert (out / "results.jsonl").read_bytes() == before
        calls = count_run_one(monkeypatch)
        assert main(["run", f"out={out}", *THREE]) == 0
        assert calls == [("lsh", 8, 1), ("lsh", 8, 2)]
    finally:
        holder.communicate("", timeout=30)


def test_a_rerun_under_other_settings_says_what_differs(tmp_path, capsys):
    """Stored runs of the same method, code length and seed under other settings are kept and not
    reused, and the run says why in one line per method."""
    out = tmp_path / "out"
    words = ["methods=lsh", "bits=8", *TINY[:4]]
    assert main(["run", f"out={out}", *words]) == 0
    capsys.readouterr()
    assert main(["run", f"out={out}", *words, "method.center=false"]) == 0
    printed = capsys.readouterr().out
    assert ("lsh: 1 stored run of the same code length and seed has other settings "
            "(method.center: (unset) -> False); kept in results.jsonl, not reused: training anew") in printed
    assert len(records(out)) == 2
    assert main(["run", f"out={out}", *words, "method.center=false"]) == 0  # now done: nothing to say
    assert "other settings" not in capsys.readouterr().out


@pytest.mark.parametrize("source, dim", [("backbone", None), ("pixels", 3 * 8 * 8)])
def test_a_code_length_past_the_features_is_refused_before_any_run(tmp_path, capsys, monkeypatch, source, dim):
    """pcah and itq give one bit per feature direction: a sweep asking them for more bits than the
    features have stops at planning, in one line, with nothing computed — not when that run's turn
    comes after the others have run."""
    from hashbench.registry import BACKBONES, build

    if dim is None:  # the features of the configured backbone, counted independently of the runner
        cfg = build_run_config(parse_words(["methods=pcah"]))
        dim = build(BACKBONES, {**cfg.cfg["backbone"], "frozen": True}).dims[0]
    computed = []
    monkeypatch.setattr(runner_mod.Runner, "run_one", lambda self, *a, **k: computed.append(a))
    out = tmp_path / "out"
    words = ["run", "methods=lsh,pcah,itq", f"bits=8,{dim},{dim + 1}", f"out={out}", "dataset.n_train=64",
             "dataset.n_query=8", "dataset.n_database=16", "dataset.canvas_size=8", f"classic.features={source}"]
    assert main(words) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"pcah at {dim + 1} bits" in err and f"they have {dim} (" in err
    assert f"classic.features={source}" in err and computed == [] and not out.exists()
