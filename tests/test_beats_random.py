"""Every registered method beats the chance row on the embedded dataset (slow: trains them all).

Deselect with ``pytest -m "not slow"``. 16-bit codes, the default schedule and data, seed 0. The
released-code sampler repeats each anchor floor(balance_count / n_c) + 1 times an epoch (about 5x
here, four images each: 20x an ordinary epoch); this test gives it ``balance_count=1`` (each anchor
once) so that it trains in a few minutes. Nothing else reads ``balance_count``.
"""
import json

import pytest

from hashbench.cli import main
from hashbench.method import ClassicHasher, DeepMethod, method_class
from hashbench.registry import METHODS, entries


@pytest.mark.slow
def test_every_method_beats_random_on_map(tmp_path, monkeypatch):
    monkeypatch.setenv("HASHBENCH_CACHE", str(tmp_path / "cache"))
    names = [n for n, entry in entries(METHODS).items()  # variants included: they are registered methods
             if issubclass(method_class(entry), (DeepMethod, ClassicHasher)) and n != "random"]
    out = tmp_path / "out"
    assert main(["run", f"out={out}", f"methods={','.join(names)},random", "bits=16", "device=cpu",
                 "method.balance_count=1"]) == 0
    scores = {r["method"]: r["metrics"] for r in map(json.loads, (out / "results.jsonl").read_text().splitlines())}
    chance = scores.pop("random")
    assert set(scores) == set(names)
    for name, s in scores.items():
        assert s["map"] > chance["map"] + 0.01, (name, s["map"], chance["map"])
    for deep in ("dsrh", "triplet", "hashnet", "dtsh"):  # the ranking losses learn the graded order too
        assert scores[deep]["ndcg@100"] > 2 * chance["ndcg@100"], (deep, scores[deep]["ndcg@100"])
