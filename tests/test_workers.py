"""Several workers on one out= folder: workers=N, a worker killed mid-training, stale claims."""
import json
import os
import signal
import subprocess
import sys
import time

import numba
import pytest
import torch

from hashbench.cli import main
from hashbench.results import read_records, run_key

TINY = ["dataset.n_train=64", "dataset.n_query=16", "dataset.n_database=48", "device=cpu"]
CLASSIC = ["methods=lsh,itq", "bits=8,16", "seeds=0,1,2", "classic.features=pixels", *TINY]  # 12 fast runs
# A deep run slowed down after each epoch (its checkpoint just written) when HB_SLOW_EPOCH is set:
# time enough to kill its worker mid-training.
SLOW = """
import os, time
import hashbench.progress as progress
_real = progress.Progress.advance
def _slow(self, n=1, status=None):
    _real(self, n, status)
    if self.unit == "epoch" and os.environ.get("HB_SLOW_EPOCH"):
        time.sleep(float(os.environ["HB_SLOW_EPOCH"]))
progress.Progress.advance = _slow
"""


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("HASHBENCH_CACHE", str(tmp_path / "cache"))


def comparable(recs):
    """What a run computed, without who computed it when."""
    return sorted((run_key(r), tuple(sorted(r["metrics"].items())), json.dumps(r["config"], sort_keys=True))
                  for r in recs)


def worker(words, run_id, i=0, **env):
    full = dict(os.environ, HASHBENCH_RUN_ID=run_id, HASHBENCH_WORKER=f"{i}/2", OMP_NUM_THREADS="1",
                PYTHONUNBUFFERED="1", **env)
    return subprocess.Popen([sys.executable, "-m", "hashbench.cli", "run", *words], env=full,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def test_three_workers_record_exactly_what_one_process_does(tmp_path, capsys):
    assert main(["run", f"out={tmp_path / 'one'}", *CLASSIC]) == 0
    capsys.readouterr()
    threads = torch.get_num_threads(), numba.get_num_threads()
    assert main(["run", f"out={tmp_path / 'three'}", "workers=3", *CLASSIC]) == 0
    printed = capsys.readouterr().out
    assert (torch.get_num_threads(), numba.get_num_threads()) == threads  # worker 0 was this process: restored
    assert any(line.startswith("[worker 0]   ") and "(train " in line for line in printed.splitlines())
    one, three = (read_records(tmp_path / d / "results.jsonl") for d in ("one", "three"))
    assert len(three) == 12 and len({run_key(r) for r in three}) == 12  # none twice, none lost
    assert comparable(three) == comparable(one)
    assert {r["run_id"] for r in three} == {printed.split("(run ")[1].split(")")[0]}  # the command's run id
    assert len({line.split("]")[0] for line in printed.splitlines() if line.startswith("[worker ")}) == 3
    assert "| lsh" in printed and "| itq" in printed  # the launcher's tables, once all workers stopped
    assert printed.count("## ") == 1
    assert not list((tmp_path / "three" / "claims").glob("*.claim"))
    assert not list((tmp_path / "three" / "claims").glob("*.failed"))
    capsys.readouterr()
    assert main(["run", f"out={tmp_path / 'three'}", "workers=2", *CLASSIC]) == 0  # a rerun: all done
    assert len(read_records(tmp_path / "three" / "results.jsonl")) == 12


def test_force_recomputes_each_run_once_across_workers(tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["run", f"out={out}", *CLASSIC]) == 0
    assert main(["run", f"out={out}", "workers=2", "force=true", *CLASSIC]) == 0
    recs = read_records(out / "results.jsonl")
    assert len(recs) == 24 and len({run_key(r) for r in recs[12:]}) == 12
    assert len({r["run_id"] for r in recs[12:]}) == 1


def test_a_killed_worker_s_run_is_taken_over_and_resumed_from_its_checkpoint(tmp_path):
    plugin = tmp_path / "slow.py"
    plugin.write_text(SLOW)
    words = ["methods=dsrh", "bits=8", "epochs=4", f"plugins={plugin}", "claim_timeout=3", *TINY]
    out = tmp_path / "out"
    first = worker([f"out={out}", *words], "cmd-1", HB_SLOW_EPOCH="2")
    deadline = time.time() + 120
    while not list((out / "checkpoints").glob("*.pt")) and time.time() < deadline and first.poll() is None:
        time.sleep(0.05)
    assert list((out / "checkpoints").glob("*.pt")), first.communicate()[0]
    claim = json.loads(next((out / "claims").glob("*.claim")).read_text())
    assert claim["pid"] == first.pid and claim["run_id"] == "cmd-1"
    first.send_signal(signal.SIGKILL)  # mid-training, its claim left behind
    first.wait()
    assert next((out / "claims").glob("*.claim"))
    second = worker([f"out={out}", *words], "cmd-1", i=1)
    said = second.communicate(timeout=300)[0]
    assert second.returncode == 0, said
    assert "taking over its claim (its process" in said and f"pid {first.pid}) no longer runs" in said, said
    (rec,) = read_records(out / "results.jsonl")
    epochs = [e["epoch"] for e in rec["train_log"]]
    assert epochs == [1, 2, 3, 4]
    assert not list((out / "claims").glob("*.claim")) and not list((out / "checkpoints").glob("*.pt"))
    clean = worker([f"out={tmp_path / 'clean'}", *words], "cmd-2")
    assert clean.wait(timeout=300) == 0, clean.communicate()[0]
    (ref,) = read_records(tmp_path / "clean" / "results.jsonl")
    assert rec["metrics"] == ref["metrics"] and rec["train_log"][-1]["loss"] == ref["train_log"][-1]["loss"]


def test_a_claim_left_on_another_machine_is_taken_over_once_its_heartbeat_is_older_than_the_timeout(
        tmp_path, capsys):
    from claim_files import forge

    from hashbench.config import build_run_config, parse_words
    from hashbench.results import stem
    from hashbench.runner import Runner

    out = tmp_path / "out"
    words = [f"out={out}", "methods=lsh", "bits=8", "seeds=0", "classic.features=pixels", *TINY]
    (job,) = Runner(build_run_config(parse_words(words))).plan()
    forge(out, stem(job.chash, 8, 0), age=0, timeout=2.0)  # a live worker elsewhere, heartbeat just now
    t = time.perf_counter()
    assert main(["run", *words]) == 0
    said = capsys.readouterr().out
    assert "waiting for 1 run other workers hold: lsh 8 bits seed 0" in said
    assert "taking over its claim (no heartbeat for 2 s" in said or "taking over its claim (no heartbeat for 3 s" \
        in said, said
    assert time.perf_counter() - t >= 2.0
    assert len(read_records(out / "results.jsonl")) == 1 and not list((out / "claims").glob("*.claim"))


def test_a_run_failing_in_one_worker_is_left_by_the_others_and_retried_by_the_next_command(
        tmp_path, capsys, monkeypatch):
    plugin = tmp_path / "broken_fit_while_set.py"  # a name of its own: a plugin file is imported once a process
    # Broken while HB_BROKEN_FIT is set (in this process, worker 0, and the workers it starts): the
    # patch outlives the test in this process, inert without the variable.
    plugin.write_text("import os\n"
                      "from hashbench.registry import METHODS, lookup\n"
                      "lsh = lookup(METHODS, 'lsh')\n"
                      "real = getattr(lsh.fit, 'real', lsh.fit)\n"
                      "def fit(self, X, y=None):\n"
                      "    if os.environ.get('HB_BROKEN_FIT'):\n"
                      "        raise ValueError('broken fit')\n"
                      "    return real(self, X, y)\n"
                      "fit.real = real\n"
                      "lsh.fit = fit\n")
    out = tmp_path / "out"
    words = [f"out={out}", "methods=lsh", "bits=8", "seeds=0", "classic.features=pixels", *TINY]
    monkeypatch.setenv("HB_BROKEN_FIT", "1")
    assert main(["run", *words, f"plugins={plugin}", "workers=2"]) == 2
    monkeypatch.delenv("HB_BROKEN_FIT")
    printed = capsys.readouterr()
    assert "ValueError: broken fit" in printed.out and printed.err.count("\n") == 1
    assert "stopped with an error" in printed.err
    failed = json.loads(next((out / "claims").glob("*.failed")).read_text())
    assert failed["error"] == "ValueError: broken fit"
    assert not list((out / "claims").glob("*.claim")) and not (out / "results.jsonl").exists()
    assert main(["run", *words]) == 0  # the next command retries it
    assert len(read_records(out / "results.jsonl")) == 1 and not list((out / "claims").glob("*.failed"))


@pytest.mark.parametrize("args, message", [
    (["workers=0"], "workers"),
    (["workers=2", "launcher=pytorch"], "cannot be combined with launcher=pytorch"),
    (["claim_timeout=0"], "claim_timeout"),
    (["workers=2", "device=cuda:1"], "device=cuda:1 names one GPU, but workers=2 gives each process its own"),
    (["launcher=pytorch", "device=cuda:0"], "device=cuda:0 names one GPU, but launcher=pytorch gives each"),
    (["launcher=submitit", "device=cuda:0"], "but launcher=submitit gives each process its own; use device=cuda"),
    (["submit.nodes=2"], "unknown key 'submit.nodes'"),
])
def test_bad_launch_settings_are_one_line_errors(tmp_path, capsys, args, message):
    assert main(["run", f"out={tmp_path / 'out'}", "methods=lsh", *TINY, *args]) == 2
    err = capsys.readouterr().err
    assert err.startswith("hashbench: error: ") and message in err and err.count("\n") == 1, err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("device, message", [
    ("cuda:2", "device=cuda:2 but this machine shows 2 CUDA device(s); valid: auto, cpu, cuda, cuda:0 to cuda:1"),
    ("cuda", None),
])
def test_a_gpu_index_the_machine_lacks_is_one_line_before_any_work(tmp_path, capsys, monkeypatch, device, message):
    """On a (pretended) two-GPU machine, cuda:2 is refused before the out folder exists; cuda is not."""
    from hashbench.device import resolve_device
    from hashbench.errors import HashbenchError

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    if message is None:
        assert resolve_device(device) == torch.device("cuda")
        return
    with pytest.raises(HashbenchError, match="cuda:0 to cuda:1"):
        resolve_device(device)
    assert main(["run", f"out={tmp_path / 'out'}", "methods=lsh", *TINY, f"device={device}"]) == 2
    err = capsys.readouterr().err
    assert err == f"hashbench: error: {message}\n"
    assert not (tmp_path / "out").exists()
