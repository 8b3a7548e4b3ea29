"""Per-query scores kept by every scoring, and what tables and `hashbench compare` make of them."""
import csv
import hashlib
import io
import json
import shutil

import numpy as np
import pytest

from hashbench.cli import main
from hashbench.results import ResultStore, latest, read_records
from hashbench.tables import Stats, render
from hashbench.uncertainty import interval, p_value, replicates, rng_for

TINY = ["dataset.n_train=120", "dataset.n_query=40", "dataset.n_database=100", "device=cpu",
        "classic.features=pixels"]


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("HASHBENCH_CACHE", str(tmp_path / "cache"))


@pytest.fixture(scope="module")
def sweep(tmp_path_factory, finished_sweep):
    """lsh, itq and random at 8 bits, seeds 0-2 (read only: copy to modify)."""
    return finished_sweep(tmp_path_factory.mktemp("sig"), "methods=lsh,itq,random", "bits=8", "seeds=0,1,2",
                          *TINY)[0]


def _copy(sweep, tmp_path):
    out = tmp_path / "out"
    shutil.copytree(sweep, out)
    return out


def test_every_record_keeps_per_query_scores_whose_mean_is_its_value(sweep):
    store = ResultStore(sweep)
    records = read_records(sweep / "results.jsonl")
    assert len(records) == 9
    for r in records:
        values = store.load_scores(r["per_query"])
        assert set(values) == set(r["metrics"])
        for m, v in values.items():
            assert len(v) == 40 and v.mean() == pytest.approx(r["metrics"][m], rel=1e-12)


def test_a_damaged_scores_file_is_refused_in_one_line(sweep, tmp_path, capsys):
    out = _copy(sweep, tmp_path)
    victim = sorted((out / "scores").glob("*.npz"))[0]
    victim.write_bytes(victim.read_bytes()[:-7] + b"garbage")
    assert main(["table", f"out={out}"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and victim.name in err and "sha256" in err


def _cells(text):
    return {line.split("|")[1].strip(): line.split("|")[2].strip() for line in text.splitlines()
            if line.startswith("| ") and not line.startswith("| map")}


def test_ci_table_shows_the_bootstrap_interval_of_each_cell(sweep, capsys):
    assert main(["table", f"out={sweep}", "ci=true", "metrics=map"]) == 0
    text = capsys.readouterr().out
    store = ResultStore(sweep)
    merged = [r for r in latest(store.records()) if r["method"] == "itq"]
    x = [store.load_scores(r["per_query"])["map"] for r in sorted(merged, key=lambda r: r["seed"])]
    lo, hi = interval(replicates(x, 2000, rng_for(0, "multidigits", "map", 8, (0, 1, 2))))
    cell = _cells(text)["itq"].strip("*")
    assert cell == f"{np.mean([r['metrics']['map'] for r in merged]):.4f} [{lo[0]:.4f}, {hi[0]:.4f}]"
    assert lo[0] < np.mean(x) < hi[0]
    assert "2000 resamples, bootstrap seed 0" in text
    assert main(["table", f"out={sweep}", "ci=true", "metrics=map", "format=csv"]) == 0
    rows = {r["method"]: r for r in csv.DictReader(io.StringIO(capsys.readouterr().out))}
    assert float(rows["itq"]["lo"]) == pytest.approx(lo[0]) and float(rows["itq"]["hi"]) == pytest.approx(hi[0])


def test_ci_on_runs_without_per_query_scores_says_how_to_get_them(sweep, tmp_path, capsys):
    out = _copy(sweep, tmp_path)
    lines = (out / "results.jsonl").read_text().splitlines()
    old = [json.dumps({k: v for k, v in json.loads(line).items() if k != "per_query"}) for line in lines]
    (out / "results.jsonl").write_text("\n".join(old) + "\n")
    assert main(["table", f"out={out}"]) == 0  # plain tables still work, bold by best mean, said so
    assert "best mean only where per-query scores are missing" in capsys.readouterr().out
    assert main(["table", f"out={out}", "ci=true"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "eval out=DIR force=true" in err
    assert main(["eval", f"out={out}", "force=true"]) == 0
    capsys.readouterr()
    assert main(["table", f"out={out}", "ci=true"]) == 0


def _hand(method, seed, values, data="d"):
    return dict(method=method, dataset="toy", bits=32, seed=seed, config_hash=hashlib.sha256(method.encode()).hexdigest(),
                metrics={"map": float(np.mean(values))}, config=dict(eval=dict(tables=["map"])),
                data={"sha256": data}, _values=np.asarray(values, dtype=float))


def test_bold_marks_the_best_and_whoever_is_not_significantly_worse():
    rng = np.random.default_rng(0)
    base = [rng.random(300) for _ in range(3)]
    records = ([_hand("best", s, base[s] + 0.05) for s in range(3)]
               + [_hand("tied", s, base[s] + 0.05 + rng.normal(0, 0.05, 300)) for s in range(3)]
               + [_hand("worse", s, base[s]) for s in range(3)])
    stats = Stats(lambda r, m: r["_values"])
    cells = _cells(render(records, ["map"], stats=stats))
    assert cells["best"].startswith("**") and cells["tied"].startswith("**") and not cells["worse"].startswith("**")
    # the best-mean rule, without per-query scores
    plain = _cells(render(records, ["map"]))
    assert sum(c.startswith("**") for c in plain.values()) == 1


def test_bold_is_holm_over_the_paired_p_values_against_the_best():
    from hashbench.tables import column_stats
    from hashbench.uncertainty import holm

    rng = np.random.default_rng(1)
    n = 400
    best = [_hand("best", s, 0.5 + rng.normal(0, 0.05, n)) for s in range(3)]
    others = {name: [_hand(name, s, best[s]["_values"] - shift + rng.normal(0, 0.02, n)) for s in range(3)]
              for name, shift in (("a", 0.0005), ("b", 0.002), ("c", 0.003), ("d", 0.05))}
    records = best + [r for rs in others.values() for r in rs]
    bold, _ = column_stats(records, "map", 32, Stats(lambda r, m: r["_values"]))
    x = [np.stack([best[s]["_values"]] + [others[k][s]["_values"] for k in others], 1) for s in range(3)]
    reps = replicates(x, 2000, rng_for(0, "toy", "map", 32, (0, 1, 2)))
    pvalues = [float(p_value(reps[:, 0] - reps[:, i + 1])) for i in range(len(others))]
    rejected = holm(pvalues)
    assert bold == {"best"} | {k for k, rej in zip(others, rejected) if not rej}
    assert "d" not in bold and "a" in bold  # the construction spans both outcomes


def test_compare_prints_the_paired_difference_interval_and_p(sweep, capsys):
    assert main(["compare", f"out={sweep}", "methods=itq,random", "metric=map"]) == 0
    text = capsys.readouterr().out
    store = ResultStore(sweep)
    merged = latest(store.records())
    by = {m: {r["seed"]: store.load_scores(r["per_query"])["map"] for r in merged if r["method"] == m}
          for m in ("itq", "random")}
    x = [np.stack([by["itq"][s], by["random"][s]], 1) for s in (0, 1, 2)]
    reps = replicates(x, 2000, rng_for(0, "multidigits", "map", 8, (0, 1, 2)))
    diff = reps[:, 0] - reps[:, 1]
    lo, hi = interval(diff[:, None])
    row = next(line.split() for line in text.splitlines() if line.startswith("8 "))
    mean_diff = np.mean([v.mean() for v in by["itq"].values()]) - np.mean([v.mean() for v in by["random"].values()])
    assert row[3] == f"{mean_diff:+.4f}"
    assert " ".join(row[4:6]) == f"[{lo[0]:+.4f}, {hi[0]:+.4f}]"
    assert row[6] == f"{float(p_value(diff)):.4f}" and row[7:] == ["3", "40"]


@pytest.mark.parametrize("args, message", [
    (["methods=itq"], "two different methods"),
    (["methods=itq,itq"], "two different methods"),
    (["methods=itq,nope"], "no stored result has method 'nope'"),
    (["methods=itq,lsh", "metric=map@x"], "map@x"),
    (["methods=itq,lsh", "metric=p@10"], "no stored result of itq or lsh has metric 'p@10'"),
    (["methods=itq,lsh", "resamples=5"], "resamples"),
])
def test_compare_errors_are_one_line(sweep, capsys, args, message):
    assert main(["compare", f"out={sweep}", *args]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err
