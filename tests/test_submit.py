"""launcher=submitit through submitit's local executor, and hashbench status."""
import re
import time

import pytest

from hashbench.cli import main
from hashbench.results import read_records, run_key

pytest.importorskip("submitit")

TINY = ["dataset.n_train=64", "dataset.n_query=16", "dataset.n_database=48", "device=cpu",
        "classic.features=pixels"]
SWEEP = ["methods=lsh,itq", "bits=8,16", "seeds=0,1", *TINY]  # 8 runs


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("HASHBENCH_CACHE", str(tmp_path / "cache"))


def metrics_by_run(out):
    return {run_key(r): r["metrics"] for r in read_records(out / "results.jsonl")}


def test_a_job_array_on_the_local_executor_runs_the_sweep_and_status_follows_it(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)  # a relative out= means the folder where the command was typed
    assert main(["run", "out=one", *SWEEP]) == 0
    capsys.readouterr()
    t = time.time()
    assert main(["run", "out=array", *SWEEP, "launcher=submitit", "submit.cluster=local", "submit.tasks=3"]) == 0
    said = capsys.readouterr().out
    assert time.time() - t < 30  # it returns once the tasks are submitted
    ids = re.search(r"submitted 3 worker tasks to local for 8 of 8 runs \(run (\S+)\): job (.+)\n", said)
    assert ids, said
    run_id, jobs = ids.group(1), ids.group(2).split()
    assert len(jobs) == 3 and f"hashbench status out={tmp_path / 'array'}" in said
    seen = set()
    deadline = time.time() + 240
    while time.time() < deadline:
        assert main(["status", "out=array"]) == 0
        first = capsys.readouterr().out.splitlines()[0]
        assert first.startswith(f"out=array: sweep {run_id}, 8 runs: "), first
        seen.add(first)
        if first.endswith(": 8 done"):
            break
        time.sleep(0.5)
    assert first.endswith(": 8 done"), first
    assert len(seen) > 1  # it watched the sweep progress
    assert metrics_by_run(tmp_path / "array") == metrics_by_run(tmp_path / "one")
    recs = read_records(tmp_path / "array" / "results.jsonl")
    assert len(recs) == 8 and {r["run_id"] for r in recs} == {run_id}
    for _ in range(100):  # the tasks end once their sweep is recorded and their claims released
        if not list((tmp_path / "array" / "claims").glob("*.claim")):
            break
        time.sleep(0.1)
    assert not list((tmp_path / "array" / "claims").glob("*.claim"))
    logs = list((tmp_path / "array" / "submitit" / run_id).glob("*_log.out"))
    assert len(logs) == 3 and all("hashbench run" in p.read_text() for p in logs)


def test_wait_prints_the_tables_and_a_failed_task_is_one_line(tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["run", f"out={out}", "methods=lsh", "bits=8", *TINY, "launcher=submitit", "submit.cluster=local",
                 "submit.wait=true"]) == 0
    said = capsys.readouterr().out
    assert "submitted 1 worker task to local for 1 of 1 runs" in said and "| lsh" in said
    plugin = tmp_path / "broken.py"
    plugin.write_text("import os\nfrom hashbench.registry import METHODS, lookup\n"
                      "def fit(self, X, y=None):\n    raise ValueError('broken fit')\n"
                      "if os.environ.get('HASHBENCH_WORKER'):\n    lookup(METHODS, 'lsh').fit = fit\n")
    assert main(["run", f"out={out}", "methods=lsh", "bits=16", *TINY, f"plugins={plugin}", "launcher=submitit",
                 "submit.cluster=local", "submit.wait=true"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("hashbench: error: 1 of 1 tasks failed") and err.count("\n") == 1, err
    assert main(["status", f"out={out}"]) == 0
    status = capsys.readouterr().out
    assert "1 runs: 1 failed" in status and "ValueError: broken fit" in status, status


def test_submit_options_submitit_refuses_are_one_line_errors(tmp_path, capsys):
    assert main(["run", f"out={tmp_path / 'out'}", "methods=lsh", *TINY, "launcher=submitit", "submit.cluster=local",
                 "submit.options.not_a_parameter=1"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("hashbench: error: submit: submitit refused") and err.count("\n") == 1, err
    assert "not_a_parameter" in err
    assert not (tmp_path / "out" / "sweeps").exists()


def test_status_calls_a_record_short_of_the_plan_pending_as_the_sweep_would(tmp_path, capsys):
    """A record without a metric the sweep asks for is re-scored by it, one made on other data is
    trained anew: neither is done; with the metric and the data it was planned on, it is."""
    import json

    from hashbench.config import build_run_config, parse_words
    from hashbench.runner import Runner

    out = tmp_path / "out"
    words = [f"out={out}", "methods=lsh", "bits=8", *TINY]
    assert main(["run", *words]) == 0
    (rec,) = read_records(out / "results.jsonl")
    assert "p@10" not in rec["metrics"]
    more = build_run_config(parse_words([*words, "eval.metrics=map,p@10"]))
    Runner(more).save_plan(Runner(more).plan())
    capsys.readouterr()
    assert main(["status", f"out={out}"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].endswith("1 runs: 1 pending")
    assert lines[1].startswith("  pending  lsh 8 bits seed 0") and "recorded without p@10" in lines[1]
    assert main(["run", *words, "eval.metrics=map,p@10"]) == 0  # re-scored
    plan_file = max((out / "sweeps").glob("*.json"), key=lambda p: p.stat().st_mtime)
    plan = json.loads(plan_file.read_text())
    assert plan["data"] == rec["data"]["sha256"] and plan["runs"][0]["metrics"] == ["map", "p@10"]
    capsys.readouterr()
    assert main(["status", f"out={out}"]) == 0
    assert capsys.readouterr().out.splitlines()[0].endswith("1 runs: 1 done")
    plan_file.write_text(json.dumps({**plan, "data": "0" * 64}))  # planned on other data
    assert main(["status", f"out={out}"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].endswith("1 runs: 1 pending") and "recorded on other data" in lines[1]


def test_status_shows_running_stalled_failed_and_pending_runs(tmp_path, capsys):
    from claim_files import forge

    from hashbench.claims import Claims
    from hashbench.config import build_run_config, parse_words
    from hashbench.results import stem
    from hashbench.runner import Runner

    out = tmp_path / "out"
    words = [f"out={out}", "methods=lsh", "bits=8,16,24,32,40", *TINY]
    assert main(["run", *words[:2], "bits=8", *TINY]) == 0
    runner = Runner(build_run_config(parse_words(words)))
    jobs = runner.plan()
    runner.save_plan(jobs)
    forge(out, stem(jobs[1].chash, 16, 0), age=2, timeout=300)  # alive elsewhere
    forge(out, stem(jobs[2].chash, 24, 0), age=400, timeout=300)  # its worker stopped beating
    Claims(out, run_id="r").fail(stem(jobs[3].chash, 32, 0), jobs[3].label, "ValueError: boom")
    capsys.readouterr()
    assert main(["status", f"out={out}"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == f"out={out}: sweep {runner.run_id}, 5 runs: 1 done, 1 running, 1 stalled, 1 failed, 1 pending"
    assert re.fullmatch(r"  running  lsh 16 bits seed 0 +by node7:12345 \(heartbeat [23] s ago, since None\)",
                        lines[1]), lines[1]
    assert lines[2].startswith("  stalled  lsh 24 bits seed 0") and "no heartbeat for 400 s" in lines[2]
    assert lines[3].startswith("  failed   lsh 32 bits seed 0") and "ValueError: boom" in lines[3]
    assert lines[4] == "  pending  lsh 40 bits seed 0"
    assert "earlier sweep" in lines[5]
    assert main(["status", f"out={out}", "run=nope"]) == 2
    assert "no sweep 'nope'" in capsys.readouterr().err
