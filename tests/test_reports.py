"""Reports from stored results: `hashbench table` (markdown, latex, csv) and `hashbench plot`."""
import csv
import hashlib
import io
import shutil
import subprocess
import sys

import numpy as np
import pytest

from hashbench.cli import main
from hashbench.results import latest, read_records
from hashbench.tables import latex_escape, render

TINY = ["dataset.n_train=64", "dataset.n_query=16", "dataset.n_database=48", "device=cpu",
        "classic.features=pixels"]
PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("HASHBENCH_CACHE", str(tmp_path / "cache"))


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    """A finished sweep: lsh and random at 8 and 12 bits, seeds 0 and 1 (read only: copy to modify)."""
    root = tmp_path_factory.mktemp("sweep")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HASHBENCH_CACHE", str(root / "cache"))
        buf = io.StringIO()
        mp.setattr(sys, "stdout", buf)
        assert main(["run", f"out={root / 'out'}", "methods=lsh,random", "bits=8,12", "seeds=0,1", *TINY]) == 0
    return root / "out", buf.getvalue()


def table_rows(text):
    """The cells of every markdown table row (header and rule lines included)."""
    return [[c.strip() for c in line.strip().strip("|").split("|")] for line in text.splitlines()
            if line.startswith("|")]


def record(method, bits, seed, value, **extra):
    return dict(method=method, dataset="toy", bits=bits, seed=seed, config_hash=hashlib.sha256(method.encode()).hexdigest(),
                metrics={"map": value}, config=dict(eval=dict(tables=["map"])), **extra)


# ------------------------------------------------------------------------------ table
def test_table_equals_the_tables_printed_by_the_run(sweep, capsys):
    out, printed = sweep
    written = next(out.glob("tables-*.md")).read_text()
    assert written in printed
    assert main(["table", f"out={out}"]) == 0
    assert capsys.readouterr().out == written
    assert main(["table", f"out={out}", "format=latex"]) == 0
    assert capsys.readouterr().out == next(out.glob("tables-*.tex")).read_text()


def test_table_cells_are_mean_and_sample_std_over_seeds_with_best_in_bold(sweep, capsys):
    out, _ = sweep
    recs = read_records(out / "results.jsonl")
    assert main(["table", f"out={out}", "metrics=ndcg@100", "bits=12"]) == 0
    text = capsys.readouterr().out
    cells = {}
    for m in ("lsh", "random"):
        v = [r["metrics"]["ndcg@100"] for r in recs if r["method"] == m and r["bits"] == 12]
        assert len(v) == 2
        cells[m] = f"{np.mean(v):.4f} ± {np.std(v, ddof=1):.4f}"
    best = max(cells, key=lambda m: float(cells[m].split()[0]))
    other = ({"lsh", "random"} - {best}).pop()
    rows = {c[0]: c[1:] for c in (table_rows(text))}
    assert rows[best] == [f"**{cells[best]}**"] and rows[other] == [cells[other]]
    assert "| 8 bits" not in text and "Seeds: 0, 1" in text and "ties: expected" in text


def test_csv_is_tidy_and_unrounded(sweep, capsys):
    out, _ = sweep
    assert main(["table", f"out={out}", "format=csv", "metrics=map"]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert len(rows) == 4 and {r["method"] for r in rows} == {"lsh", "random"}
    recs = read_records(out / "results.jsonl")
    for row in rows:
        v = [r["metrics"]["map"] for r in recs if r["method"] == row["method"] and r["bits"] == int(row["bits"])]
        assert float(row["mean"]) == pytest.approx(np.mean(v), abs=1e-15)
        assert float(row["std"]) == pytest.approx(np.std(v, ddof=1), abs=1e-15)
        assert row["n_seeds"] == "2" and row["seeds"] == "0 1" and row["ties"] == "expected"
    for bits in ("8", "12"):
        col = [r for r in rows if r["bits"] == bits]
        assert [r["best"] for r in col].count("True") >= 1
        assert max(col, key=lambda r: float(r["mean"]))["best"] == "True"


def test_render_by_hand():
    recs = [record("itq_cca", 8, 0, 0.4), record("itq_cca", 8, 1, 0.6), record("lsh", 8, 0, 0.3),
            record("lsh", 16, 0, 0.7), {**record("lsh", 16, 0, 0.2), "dataset": "other"}]
    text = render(latest(recs))
    assert text.count("## ") == 2 and "## toy: methods × code length" in text and "## other:" in text
    assert ["itq_cca", "**0.5000 ± 0.1414**", ""] in table_rows(text)
    assert ["lsh", "0.3000", "**0.7000**"] in table_rows(text)
    assert "0.3000" in text and "**0.7000**" in text
    tex = render(latest(recs), fmt="latex")
    assert r"itq\_cca" in tex and r"\textbf{0.5000 $\pm$ 0.1414}" in tex and "2^r" not in tex
    assert latex_escape("a_b & 2^r >= 1") == r"a\_b \& 2\textasciicircum{}r $\geq$ 1"


def test_a_method_under_two_configs_gets_two_labelled_rows():
    a = {**record("dsrh", 8, 0, 0.5), "config_hash": "aaaaaaaa11", "config": dict(train=dict(epochs=1))}
    b = {**record("dsrh", 8, 0, 0.7), "config_hash": "bbbbbbbb22", "config": dict(train=dict(epochs=5))}
    text = render(latest([a, b]), ["map"])
    assert ["dsrh [aaaaaaaa]", "0.5000"] in table_rows(text) and ["dsrh [bbbbbbbb]", "**0.7000**"] in table_rows(text)
    assert "dsrh [aaaaaaaa]: train.epochs=1; dsrh [bbbbbbbb]: train.epochs=5" in text


@pytest.mark.parametrize("args,message", [
    (["table", "out=OUT", "format=rst"], "format must be one of markdown, latex, csv, html; got 'rst'"),
    (["table", "out=OUT", "fromat=csv"], "unknown key 'fromat'; valid: format"),
    (["table", "out=OUT", "metrics=p@7"], "no stored result has metric 'p@7'"),
    (["table", "out=OUT", "bits=64"], "no stored result has bits 64; stored: 8, 12"),
    (["table", "out=EMPTY"], "no results in"),
    (["plot", "out=OUT", "ks=0"], "ks must be a non-empty list, each value an integer in 1.."),
    (["plot", "out=OUT", "too=x"], "unknown key 'too'; valid: to"),
])
def test_report_errors_are_one_line(sweep, tmp_path, capsys, args, message):
    out, _ = sweep
    args = [a.replace("OUT", str(out)).replace("EMPTY", str(tmp_path)) for a in args]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith("hashbench: error: ") and message in err and err.count("\n") == 1, err


# ------------------------------------------------------------------------------ plot
def test_plot_writes_png_figures(sweep, tmp_path, capsys):
    pytest.importorskip("matplotlib")
    out = tmp_path / "out"
    shutil.copytree(sweep[0], out)
    assert main(["plot", f"out={out}"]) == 0
    figures = out / "figures"
    names = sorted(p.name for p in figures.iterdir())
    expected = [f"multidigits-{m}.png" for m in ("map", "wmap@5000", "ndcg@100", "acg@100")]
    expected += [f"multidigits-{kind}-{b}bits.png" for kind in ("curves", "pr") for b in (8, 12)]
    assert sorted(expected + ["multidigits-curves.json"]) == names
    for name in expected:
        data = (figures / name).read_bytes()
        assert data.startswith(PNG) and len(data) > 5000
    assert "wrote 9 files" in capsys.readouterr().out

    import json

    from hashbench.metrics import curves
    from hashbench.results import ResultStore

    # the curve data are curves() of the saved codes, averaged over the seeds
    payload = json.loads((figures / "multidigits-curves.json").read_text())
    lsh8 = next(c for c in payload["curves"] if c["row"] == "lsh" and c["bits"] == 8)
    recs = [r for r in read_records(out / "results.jsonl") if r["method"] == "lsh" and r["bits"] == 8]
    store = ResultStore(out)
    per_seed = [curves(*(store.load_codes(r["config_hash"], 8, r["seed"])[k]
                         for k in ("query", "database", "query_labels", "database_labels")), ks=lsh8["k"])
                for r in recs]
    assert lsh8["k"] == [1, 10, 20] and lsh8["seeds"] == [0, 1]
    assert np.allclose(lsh8["ndcg"], np.mean([c["ndcg"] for c in per_seed], 0))
    assert np.allclose(lsh8["precision"], np.mean([c["precision"] for c in per_seed], 0))

    assert main(["plot", f"out={out}", "methods=lsh", "metrics=map", f"to={tmp_path / 'fig'}", "ks=5,10"]) == 0
    assert sorted(p.name for p in (tmp_path / "fig").glob("*.png")) == [
        "multidigits-curves-12bits.png", "multidigits-curves-8bits.png", "multidigits-map.png",
        "multidigits-pr-12bits.png", "multidigits-pr-8bits.png"]


def test_plot_without_matplotlib_says_how_to_install(sweep, monkeypatch, capsys):
    for name in [m for m in sys.modules if m == "matplotlib" or m.startswith("matplotlib.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib now raises ImportError
    assert main(["plot", f"out={sweep[0]}"]) == 2
    err = capsys.readouterr().err
    assert err == "hashbench: error: plotting needs matplotlib, an optional extra: pip install 'hashbench[plot]'\n"


def test_help_documents_every_command():
    res = subprocess.run([sys.executable, "-m", "hashbench.cli", "--help"], capture_output=True, text=True,
                         timeout=120)
    for command in ("run", "eval", "table", "plot", "list", "data"):
        assert command in res.stdout
    from hashbench.config import EVAL_WORDS, PLOT_WORDS, TABLE_WORDS

    for command, words in (("eval", EVAL_WORDS), ("table", TABLE_WORDS), ("plot", PLOT_WORDS)):
        keys = words.keys
        res = subprocess.run([sys.executable, "-m", "hashbench.cli", command, "--help"], capture_output=True,
                             text=True, timeout=120)
        assert res.returncode == 0
        for key in keys:
            assert f"  {key}" in res.stdout
