"""hashbench.metrics: names, errors, conventions, curves and the METRICS registry."""
from __future__ import annotations

import numpy as np
import pytest

from hashbench.errors import HashbenchError
from hashbench.metrics import (
    DEFAULT_METRICS,
    Metric,
    conventions,
    curves,
    evaluate,
    parse_metric,
)


def make_data(seed=0, nq=8, n_db=70, bits=8, classes=5):
    rng = np.random.default_rng(seed)
    return (rng.integers(0, 2, (nq, bits), dtype=np.uint8),
            rng.integers(0, 2, (n_db, bits), dtype=np.uint8),
            (rng.random((nq, classes)) < 0.3).astype(np.uint8),
            (rng.random((n_db, classes)) < 0.3).astype(np.uint8))


@pytest.mark.parametrize("name,parsed", [
    ("map", Metric("map")), ("map@5000", Metric("map", 5000)), ("wmap@50", Metric("wmap", 50)),
    ("wmap", Metric("wmap")), ("ndcg@100", Metric("ndcg", 100)), ("acg@7", Metric("acg", 7)),
    ("p@100", Metric("p", 100)), ("p@h2", Metric("p@h", 2)), ("p@h0", Metric("p@h", 0)),
    ("mAP@10", Metric("map", 10)),
])
def test_parse_metric(name, parsed):
    assert parse_metric(name) == parsed
    assert str(parsed) == name.lower()


def test_result_keys_are_the_requested_names():
    data = make_data()
    names = ["map", "map@5000", "wmap@5000", "ndcg@100", "acg@100", "p@100", "p@h2", "mAP@3"]
    scores = evaluate(*data, metrics=names)
    assert list(scores) == names
    assert all(isinstance(v, float) and 0 <= v for v in scores.values())
    assert list(evaluate(*data)) == list(DEFAULT_METRICS)


@pytest.mark.parametrize("kwargs,fragment", [
    ({"metrics": ["mapp@10"]}, "unknown metric 'mapp@10'; valid: map@K, wmap@K, map,"),
    ({"metrics": ["map@0"]}, "positive integer"),
    ({"metrics": ["p@-3"]}, "positive integer"),
    ({"metrics": ["ndcg@ten"]}, "positive integer"),
    ({"metrics": ["ndcg"]}, "needs a cut"),
    ({"metrics": ["p@hx"]}, "Hamming radius"),
    ({"metrics": []}, "no metric"),
    ({"ties": "random"}, "give a seed"),
    ({"ties": "indx"}, "unknown tie policy 'indx'; valid: index"),
    ({"ap_denominator": "min"}, "unknown ap_denominator 'min'; valid: min_r_k"),
    ({"no_relevant": "drop"}, "unknown no_relevant"),
    ({"graded": "gradd"}, "unknown similarity 'gradd'; valid: graded"),
    ({"backend": "cuda"}, "unknown backend"),
    ({"memory_budget": 0}, "memory_budget"),
])
def test_bad_options_raise_one_line(kwargs, fragment):
    with pytest.raises(HashbenchError) as err:
        evaluate(*make_data(), **kwargs)
    assert fragment in str(err.value)
    assert "\n" not in str(err.value)


def test_bad_inputs_raise_one_line():
    qc, dc, ql, dl = make_data()
    cases = [
        ((qc[:, :4], dc, ql, dl), "query_codes have 4 bits but db_codes have 8"),
        ((qc, dc, ql[:3], dl), "query_labels have 3 rows but query_codes have 8"),
        ((qc, dc, ql, dl[:5]), "db_labels have 5 rows but db_codes have 70"),
        ((qc, dc, ql[:, :2], dl), "query_labels have 2 classes but db_labels have 5"),
        ((qc * 3, dc, ql, dl), "query_codes must hold {0, 1} or {-1, +1}"),
        ((qc.astype(int) - 1, dc, ql, dl), "mix of 0 and -1"),
        ((qc, dc.astype(float) / 2, ql, dl), "db_codes must hold"),
        ((qc, dc, ql * 2, dl), "multi-hot"),
        ((qc[0], dc, ql, dl), "must be 2-D"),
        ((qc[:0], dc, ql[:0], dl), "empty"),
    ]
    for args, fragment in cases:
        with pytest.raises(HashbenchError) as err:
            evaluate(*args, metrics=["map"])
        assert fragment in str(err.value), (fragment, str(err.value))
        assert "\n" not in str(err.value)


def test_details_and_conventions():
    scores, info = evaluate(*make_data(), metrics=["map@10"], ties="random:3", details=True)
    for key in ("n_queries", "queries_without_relevant", "ties", "ap_denominator",
                "no_relevant", "conventions", "per_query", "n_evaluated"):
        assert key in info
    assert info["ties"] == "random:3" and info["ap_denominator"] == "retrieved"
    assert info["no_relevant"] == "zero" and info["n_queries"] == 8
    assert info["per_query"]["map@10"].shape == (8,)
    assert info["conventions"] == conventions("random:3")
    line = conventions()
    assert "\n" not in line and "expected" in line and "retrieved in the top K" in line
    assert "count as 0" in line
    other = conventions("index", ap_denominator="min_r_k", no_relevant="skip")
    assert "index" in other and "min(R, K)" in other and "skipped" in other
    with pytest.raises(HashbenchError):
        conventions("sometimes")


def test_curves_agree_with_evaluate():
    data = make_data(1, nq=10, n_db=90, bits=6)
    ks = [1, 5, 20, 500]
    for ties in ("expected", "index"):
        c = curves(*data, ks=ks, ties=ties)
        np.testing.assert_array_equal(c["radius"], np.arange(7))
        names = [f"p@h{r}" for r in range(7)] + [f"{f}@{k}" for f in ("ndcg", "p", "acg")
                                                  for k in ks]
        s = evaluate(*data, metrics=names, ties=ties)
        np.testing.assert_allclose(c["precision"], [s[f"p@h{r}"] for r in range(7)], atol=1e-12)
        for fam in ("ndcg", "p", "acg"):
            np.testing.assert_allclose(c[fam], [s[f"{fam}@{k}"] for k in ks], atol=1e-12)
        assert np.all(np.diff(c["recall"]) >= -1e-12)
        has = 1 - c["queries_without_relevant"] / c["n_queries"]
        assert c["recall"][-1] == pytest.approx(has)


def test_curves_recall_by_hand():
    # one query 00, database 00 (relevant), 01 (not), 11 (relevant): recall 1/2, 1/2, 1
    c = curves(np.array([[0, 0]]), np.array([[0, 0], [0, 1], [1, 1]]), np.array([[1]]),
               np.array([[1], [0], [1]]), ks=[1, 2])
    np.testing.assert_allclose(c["recall"], [0.5, 0.5, 1.0])
    np.testing.assert_allclose(c["precision"], [1.0, 0.5, 2 / 3])
    np.testing.assert_allclose(c["p"], [1.0, 0.5])


def test_registry_lists_every_family_with_a_summary():
    from hashbench.registry import METRICS, entries, summary

    found = entries(METRICS)
    data = make_data(2)
    calls = {"map": {"k": 10}, "wmap": {"k": 10}, "ndcg": {"k": 10}, "acg": {"k": 10},
             "p": {"k": 10}, "p@h": {"radius": 1}}
    names = {"map": "map@10", "wmap": "wmap@10", "ndcg": "ndcg@10", "acg": "acg@10",
             "p": "p@10", "p@h": "p@h1"}
    for family, kwargs in calls.items():
        assert family in found
        assert summary(found[family])
        value = found[family](*data, ties="index", **kwargs)
        assert value == evaluate(*data, metrics=[names[family]], ties="index")[names[family]]
    assert found["map"](*data) == evaluate(*data, metrics=["map"])["map"]


def test_progress_sees_every_chunk_and_changes_nothing():
    data = make_data(4, nq=30, n_db=90)
    calls = []
    with_progress = evaluate(*data, metrics=["map", "ndcg@10"], memory_budget=1,
                             progress=lambda done, total: calls.append((done, total)))
    assert with_progress == evaluate(*data, metrics=["map", "ndcg@10"])
    assert calls == [(i, 30) for i in range(1, 31)]  # a budget of 1 byte: one query per chunk


PLUGIN_METRIC = '''
import numpy as np
from hashbench.registry import METRICS


@METRICS.register_module(name="{name}")
def nearest_relevant(query_codes, db_codes, query_labels, db_labels, k=None):
    """Share of relevant items among the k database items of lowest index at the smallest distance."""
    out = []
    for q, y in zip(query_codes, query_labels):
        d = (db_codes != q).sum(1)
        near = np.flatnonzero(d == d.min())[: k or None]
        out.append(float(((db_labels[near] @ y) > 0).mean()))
    return np.array(out)
'''


def _nearest_oracle(qc, dc, ql, dl, k):
    """The same rule, written as a plain loop over queries and items."""
    scores = []
    for i in range(len(qc)):
        dist = [sum(int(a != b) for a, b in zip(qc[i], dc[j])) for j in range(len(dc))]
        best = min(dist)
        near = [j for j in range(len(dc)) if dist[j] == best][:k]
        scores.append(sum(int(any(ql[i][c] and dl[j][c] for c in range(len(ql[i])))) for j in near) / len(near))
    return scores


def test_a_plugin_metric_is_resolved_through_the_registry(tmp_path, monkeypatch):
    from hashbench.plugins import import_plugin
    from hashbench.registry import METRICS, entries, summary

    path = tmp_path / "metric_plugin.py"
    path.write_text(PLUGIN_METRIC.format(name="nearest"))
    import_plugin(str(path))
    assert "nearest" in entries(METRICS) and summary(entries(METRICS)["nearest"]).startswith("Share of relevant")
    qc, dc, ql, dl = make_data(5, nq=12, n_db=40)
    qc, dc, ql, dl = (np.asarray(a) for a in (qc, dc, ql, dl))
    scores, info = evaluate(qc, dc, ql, dl, metrics=["nearest@3", "nearest", "map"], details=True)
    for name, k in (("nearest@3", 3), ("nearest", None)):
        want = _nearest_oracle(qc.tolist(), dc.tolist(), ql.tolist(), dl.tolist(), k)
        np.testing.assert_allclose(info["per_query"][name], want)
        assert scores[name] == pytest.approx(np.mean(want))
    assert scores["map"] == evaluate(qc, dc, ql, dl, metrics=["map"])["map"]
    with pytest.raises(HashbenchError, match=r"metric 'nearest@x': the cut must be a positive integer"):
        parse_metric("nearest@x")
    with pytest.raises(HashbenchError, match=r"unknown metric 'neerest'; valid: nearest\[@k\]"):
        parse_metric("neerest")


def test_a_plugin_metric_in_a_run_and_in_eval(tmp_path, monkeypatch, capsys):
    import json

    from hashbench.cli import main

    monkeypatch.setenv("HASHBENCH_CACHE", str(tmp_path / "cache"))
    path = tmp_path / "metric_plugin_run.py"
    path.write_text(PLUGIN_METRIC.format(name="nearest_run"))
    out = tmp_path / "out"
    tiny = ["bits=8", "dataset.n_train=32", "dataset.n_query=8", "dataset.n_database=24"]
    assert main(["run", "methods=random", f"plugins={path}", f"out={out}", "eval.metrics=map,nearest_run@5",
                 "eval.tables=nearest_run@5", *tiny]) == 0
    rec = json.loads((out / "results.jsonl").read_text().splitlines()[0])
    assert 0 <= rec["metrics"]["nearest_run@5"] <= 1 and "| nearest_run@5" in capsys.readouterr().out
    assert main(["eval", f"out={out}", f"plugins={path}", "metrics=nearest_run@2"]) == 0
    last = json.loads((out / "results.jsonl").read_text().splitlines()[-1])
    assert set(last["metrics"]) == {"nearest_run@2"}
    assert main(["list", "metrics"]) == 0 and "nearest_run" in capsys.readouterr().out


def test_scoring_leaves_torch_threads_alone():
    """Numba's OpenMP kernels reset the shared OpenMP thread count; evaluate puts torch's back, so a
    training step after scoring computes as before (a resumed sweep equals an uninterrupted one)."""
    import torch

    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        evaluate(*make_data(6, nq=20, n_db=60), metrics=["map", "ndcg@10"])
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)
