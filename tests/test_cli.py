"""The command line end to end on a tiny setting, and its errors."""
import json
import subprocess
import sys

import numpy as np
import pytest

from hashbench.cli import main

TINY = ["bits=8,12", "epochs=1", "dataset.n_train=64", "dataset.n_query=16", "dataset.n_database=48",
        "device=cpu"]


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("HASHBENCH_CACHE", str(tmp_path / "cache"))


def test_run_writes_records_and_tables(tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["run", "methods=dsrh,random", f"out={out}", *TINY]) == 0
    printed = capsys.readouterr().out
    recs = [json.loads(l) for l in (out / "results.jsonl").read_text().splitlines()]
    assert [(r["method"], r["bits"], r["seed"]) for r in recs] == [
        ("dsrh", 8, 0), ("dsrh", 12, 0), ("random", 8, 0), ("random", 12, 0)]
    for r in recs:
        assert set(r["metrics"]) == {"map", "map@1000", "wmap@5000", "ndcg@100", "acg@100", "p@100", "p@h2"}
        assert all(0 <= v <= 4 for v in r["metrics"].values())  # acg is in shared labels, the rest in [0, 1]
        assert r["dataset"] == "multidigits" and r["versions"]["torch"] and r["train_seconds"] >= 0
        assert r["config"]["method"]["type"] == r["method"]
    assert recs[0]["train_log"][0]["epoch"] == 1 and np.isfinite(recs[0]["train_log"][0]["loss"])
    assert recs[0]["config"]["backbone"]["name"] == "test_resnet"
    tables = list(out.glob("tables-*.md"))
    assert len(tables) == 1
    text = tables[0].read_text()
    assert text in printed  # what is printed is what is written
    for metric in ("| map ", "| wmap@5000 ", "| ndcg@100 ", "| acg@100 "):
        assert metric in text
    assert "ties: expected" in text and "| 8 bits" in text and "| 12 bits" in text

    # a second run appends; nothing earlier is overwritten (a run already done is skipped)
    assert main(["run", "methods=random", "bits=8", "seeds=0,1", f"out={out}", *TINY[1:]]) == 0
    assert len((out / "results.jsonl").read_text().splitlines()) == 5
    assert tables[0].read_text() == text


def test_same_seed_same_result_on_cpu(tmp_path):
    runs = []
    for name in ("a", "b"):
        assert main(["run", "methods=dsrh", f"out={tmp_path / name}", *TINY[:1], *TINY[1:]]) == 0
        runs.append([json.loads(l)["metrics"] for l in (tmp_path / name / "results.jsonl").read_text().splitlines()])
    assert runs[0] == runs[1]


def cli(*args):
    return subprocess.run([sys.executable, "-m", "hashbench.cli", *args], capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("args,message", [
    (["run", "methods=dsrhh"], "hashbench: error: unknown method 'dsrhh'; valid: dsrh"),
    (["run", "bits=0"], "hashbench: error: bits must be a non-empty list, each value an integer in 1..1024; got 0"),
    (["run", "dataset=mirflikr25k"], "hashbench: error: unknown dataset 'mirflikr25k'; valid: mirflickr25k"),
    (["run", "backbone.name=resnet181", "methods=dsrh", "bits=8", "epochs=1"],
     "hashbench: error: unknown timm model 'resnet181'; closest: resnet18"),
])
def test_user_errors_exit_2_with_one_line(args, message):
    res = cli(*args)
    assert res.returncode == 2
    assert res.stderr.startswith(message), res.stderr
    assert "Traceback" not in res.stderr and res.stderr.count("\n") == 1


def test_help_lists_every_run_key():
    from hashbench.config import RUN_WORDS

    res = cli("run", "--help")
    assert res.returncode == 0
    for key in list(RUN_WORDS.keys) + [f"{s}.KEY" for s in RUN_WORDS.sections]:
        assert f"  {key}" in res.stdout


def test_list_methods_groups_every_method_once_under_its_family(capsys):
    from hashbench.cli import main
    from hashbench.method import FAMILIES, family
    from hashbench.registry import METHODS, entries

    assert main(["list", "methods"]) == 0
    lines = capsys.readouterr().out.splitlines()
    cut = next(i for i, l in enumerate(lines) if l.startswith("configured"))  # config-only names follow
    configured = [l.split()[0] for l in lines[cut + 1:]]
    assert "dsrh_as_released" in configured and not set(configured) & set(entries(METHODS))
    lines = lines[:cut]
    heads = [l[:-1] for l in lines if not l.startswith(" ")]
    assert heads == [f for f in FAMILIES if any(family(e) == f for e in entries(METHODS).values())]
    under, current = {}, None
    for line in lines:
        if line.startswith(" "):
            name = line.split()[0]
            assert name not in under
            under[name] = current
        else:
            current = line[:-1]
    assert under == {name: family(entry) for name, entry in entries(METHODS).items()}
    assert under["dsrh"] == "triplet" and under["dpsh"] == "pairwise" and under["itq"] == "classic"
