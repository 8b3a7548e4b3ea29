"""`hashbench table out=a,b` and `compare out=a,b` read several stores as one: the same output as
one store holding both, per-query scores read from each record's own folder."""
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
    assert main(["plot", f"out={stores / 'a'},{stores / 'b'}"]) == 2
    assert "out must be a string" in capsys.readouterr().err
    assert main(["table", f"out={stores / 'a'},{stores / 'nowhere'}"]) == 2
    assert "nowhere" in capsys.readouterr().err
