"""`hashbench table out=a,b` (and compare, plot, report, eval) read several stores as one: the
same output as one store holding both, per-query scores and saved codes read from each record's
own folder."""
import json
import re

import pytest

from hashbench.cli import main

TINY = ["dataset.n_train=64", "dataset.n_query=16", "dataset.n_database=48", "device=cpu", "classic.features=pixels",
        "bits=8,12"]


@pytest.fixture(scope="module")
def stores(tmp_path_factory):
    root = tmp_path_factory.mktemp("stores")
    assert main(["run", f"out={root / 'a'}", "methods=lsh,pcah", "seeds=0,1", *TINY]) == 0
    assert main(["run", f"out={root / 'b'}", "methods=lsh,pcah", "seeds=2", *TINY]) == 0
    assert main(["run", f"out={root / 'b'}", "methods=itq", "seeds=0,1,2", *TINY]) == 0
    assert main(["run", f"out={root / 'both'}", "methods=lsh,pcah", "seeds=0,1,2", *TINY]) == 0
    assert main(["run", f"out={root / 'both'}", "methods=itq", "seeds=0,1,2", *TINY]) == 0
    return root


@pytest.mark.parametrize("extra", [[], ["ci=true"], ["format=csv"], ["format=latex", "metrics=map,ndcg@100"]])
def test_two_stores_tabled_as_one_equal_one_store_holding_both(stores, capsys, extra):
    capsys.readouterr()
    assert main(["table", f"out={stores / 'both'}", *extra]) == 0
    one = capsys.readouterr().out
    assert main(["table", f"out={stores / 'a'},{stores / 'b'}", *extra]) == 0
    assert capsys.readouterr().out == one and "lsh" in one and "itq" in one


def test_compare_reads_the_paired_scores_from_each_store(stores, capsys):
    capsys.readouterr()
    words = ["methods=lsh,itq", "metric=map"]
    assert main(["compare", f"out={stores / 'both'}", *words]) == 0
    one = capsys.readouterr().out
    assert main(["compare", f"out={stores / 'a'},{stores / 'b'}", *words]) == 0
    assert capsys.readouterr().out == one


def test_commands_that_take_one_folder_say_so(stores, capsys):
    assert main(["status", f"out={stores / 'a'},{stores / 'b'}"]) == 2
    assert "out must be a string" in capsys.readouterr().err
    assert main(["table", f"out={stores / 'a'},{stores / 'nowhere'}"]) == 2
    assert "nowhere" in capsys.readouterr().err


def test_plot_of_two_stores_draws_the_curves_of_one_store_holding_both(stores, tmp_path):
    pytest.importorskip("matplotlib")
    assert main(["plot", f"out={stores / 'both'}", f"to={tmp_path / 'one'}"]) == 0
    assert main(["plot", f"out={stores / 'a'},{stores / 'b'}", f"to={tmp_path / 'two'}"]) == 0
    one, two = (sorted(p.name for p in (tmp_path / d).iterdir()) for d in ("one", "two"))
    assert one == two and any(n.endswith("-curves.json") for n in one)
    for name in (n for n in one if n.endswith(".json")):  # the curves come from each run's own saved codes
        assert json.loads((tmp_path / "one" / name).read_text()) == json.loads((tmp_path / "two" / name).read_text())


def test_report_of_two_stores_equals_the_report_of_one_store_holding_both(stores, tmp_path):
    def body(path):
        page = path.read_text()
        page = re.sub(r"hashbench report: [^<]*", "", page)
        page = re.sub(r"<p>\d+ runs from [^;]*; written [^<]*</p>", "", page)
        return re.sub(r"data:image/png;base64,[A-Za-z0-9+/=]+", "PNG", page)  # matplotlib stamps no dates, but be safe

    assert main(["report", f"out={stores / 'both'}", f"to={tmp_path / 'one.html'}"]) == 0
    assert main(["report", f"out={stores / 'a'},{stores / 'b'}", f"to={tmp_path / 'two.html'}"]) == 0
    one, two = body(tmp_path / "one.html"), body(tmp_path / "two.html")
    assert one == two and one.count("<table>") > 2 and "itq" in one
    assert "thumb" in one or "<img" in one  # retrieval examples, drawn from the saved codes of both folders
    assert f"runs from {stores / 'a' / 'results.jsonl'}, {stores / 'b' / 'results.jsonl'}" in \
        (tmp_path / "two.html").read_text()


def test_eval_of_two_stores_rescores_each_into_its_own_and_prints_one_table(stores, capsys):
    from hashbench.results import read_records

    before = {d: len(read_records(stores / d / "results.jsonl")) for d in ("a", "b", "both")}
    capsys.readouterr()
    assert main(["eval", f"out={stores / 'both'}", "metrics=p@10", "eval.tables=p@10"]) == 0
    one = capsys.readouterr().out
    assert main(["eval", f"out={stores / 'a'},{stores / 'b'}", "metrics=p@10", "eval.tables=p@10"]) == 0
    two = capsys.readouterr().out
    after = {d: len(read_records(stores / d / "results.jsonl")) for d in ("a", "b", "both")}
    assert after == {"a": before["a"] + 8, "b": before["b"] + 10, "both": before["both"] + 18}
    table = lambda text: text[text.index("## "):]  # noqa: E731
    assert table(two) == table(one) and "p@10" in table(one)
    assert two.count("hashbench eval ") == 2  # one line per folder scored
