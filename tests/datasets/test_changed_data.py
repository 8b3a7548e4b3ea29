"""A record is tied to the data it was made on: a rerun into the same out= notices edited labels or
shrunken splits and trains anew on the current data, and tables say when a mean mixes data."""
import json

from dataset_trees import write_jpeg, write_lines
from hashbench.cli import main
from hashbench.results import read_records

WORDS = ["methods=random", "bits=8", "dataset=listfile"]


def make_lists(root, flip: bool = False, n: int = 30):
    rows = []
    for i in range(n):
        if not (root / "img" / f"{i:03d}.jpg").exists():
            write_jpeg(root / "img" / f"{i:03d}.jpg", seed=i)
        labels = [i % 2, 1 - i % 2, int(i % 3 == 0)]
        if flip:  # every image shares the last label with every other: all relevant
            labels = [1, 1, 1]
        rows.append(f"img/{i:03d}.jpg {' '.join(map(str, labels))}")
    write_lines(root / "train.txt", rows[:20])
    write_lines(root / "test.txt", rows[20:28])
    write_lines(root / "database.txt", rows[:20])


def run(out, root, *words):
    return main(["run", f"out={out}", *WORDS, f"data_root={root}", *words])


def test_edited_labels_are_noticed_and_the_run_is_made_again(tmp_path, capsys):
    root, out = tmp_path / "lists", tmp_path / "out"
    make_lists(root)
    assert run(out, root) == 0
    first = read_records(out / "results.jsonl")[0]
    assert first["data"]["splits"]["train"]["n"] == 20 and len(first["data"]["sha256"]) == 64
    make_lists(root, flip=True)
    capsys.readouterr()
    assert run(out, root) == 0
    text = capsys.readouterr().out
    assert "skipped" not in text.split("\n## ")[0]
    assert "not reused, training anew: random 8 bits seed 0: data changed (train: other items, labels or inputs" in text
    recs = read_records(out / "results.jsonl")
    assert len(recs) == 2 and recs[1]["data"]["sha256"] != first["data"]["sha256"]
    # what a fresh folder gives on the edited data is what the rerun recorded (all relevant: map 1)
    assert run(tmp_path / "fresh", root) == 0
    fresh = read_records(tmp_path / "fresh" / "results.jsonl")[0]
    assert recs[1]["metrics"] == fresh["metrics"] and fresh["metrics"]["map"] == 1.0
    assert first["metrics"]["map"] < 1.0
    # the table shows the new data's numbers, not a merge with the old record's
    capsys.readouterr()
    assert main(["table", f"out={out}", "format=csv"]) == 0
    rows = [line.split(",") for line in capsys.readouterr().out.splitlines()]
    maps = [r for r in rows if r[4] == "map"]
    assert len(maps) == 1 and float(maps[0][5]) == 1.0


def test_shrunken_splits_are_not_averaged_with_the_old_ones(tmp_path, capsys):
    root, out = tmp_path / "lists", tmp_path / "out"
    make_lists(root)
    assert run(out, root, "seeds=0") == 0
    (root / "img" / "004.jpg").unlink()  # one training and database image gone: 19 and 19
    capsys.readouterr()
    assert run(out, root, "seeds=0,1") == 0
    text = capsys.readouterr().out
    assert "random 8 bits seed 0: data changed (train 20 -> 19 items, database 20 -> 19 items)" in text
    recs = read_records(out / "results.jsonl")
    assert [r["seed"] for r in recs] == [0, 0, 1]
    assert recs[1]["data"] == recs[2]["data"] != recs[0]["data"]
    assert "†" not in text and "versions of the data" not in text


def test_a_table_mixing_data_says_so(tmp_path, capsys):
    root, out = tmp_path / "lists", tmp_path / "out"
    make_lists(root)
    assert run(out, root, "seeds=0") == 0
    (root / "img" / "004.jpg").unlink()
    assert run(out, root, "seeds=1") == 0  # seed 0 stays as it was, on the old data
    capsys.readouterr()
    assert main(["table", f"out={out}"]) == 0
    text = capsys.readouterr().out
    assert " †" in text
    assert "These runs were made on 2 different versions of the data" in text
    assert "(train 20, query 8, database 20): random 8 bits seed 0" in text
    assert "(train 19, query 8, database 19): random 8 bits seed 1" in text
    assert main(["table", f"out={out}", "format=csv"]) == 0
    rows = [line.split(",") for line in capsys.readouterr().out.splitlines()]
    col = rows[0].index("data_sha256")
    assert len(rows[1][col].split()) == 2
    stored = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert {r["data"]["sha256"] for r in stored} == set(rows[1][col].split())


def test_eval_attributes_codes_to_the_data_they_were_made_on(tmp_path, capsys, monkeypatch):
    """Codes saved by a training on edited data whose record was never written (killed while
    scoring): `eval` scores those codes and records them with their own data, not the old record's."""
    import hashbench.runner as runner

    root, out = tmp_path / "lists", tmp_path / "out"
    make_lists(root)
    assert run(out, root) == 0
    make_lists(root, flip=True)

    def killed(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(runner, "score", killed)  # after the codes are saved, before the record
    assert run(out, root) == 130
    monkeypatch.undo()
    (old,) = read_records(out / "results.jsonl")
    assert main(["eval", f"out={out}", "metrics=map,p@5"]) == 0
    new = read_records(out / "results.jsonl")[-1]
    manifest = json.loads((out / old["codes"]).with_suffix(".json").read_text())
    assert new["data"] == manifest["data"] != old["data"]
    assert new["metrics"]["map"] == 1.0  # all relevant on the edited data
    assert new["reevaluated_from"] == manifest["run_id"] != old["run_id"]
