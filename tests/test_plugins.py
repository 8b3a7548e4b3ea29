"""Registries and the three plugin routes: plugins=, custom_imports in a config, entry points."""
import json
import textwrap

import pytest

from hashbench.cli import main
from hashbench.errors import HashbenchError
from hashbench.method import ClassicHasher
from hashbench.registry import METHODS, build, entries, lookup

PLUGIN = '''
import numpy as np
from hashbench.method import ClassicHasher
from hashbench.registry import METHODS


@METHODS.register_module(name="{name}")
class FirstBits(ClassicHasher):
    """Toy plugin: a fixed random projection's signs."""

    def fit(self, X, Y=None):
        X, _ = self._check_fit_input(X, Y)
        self.w_ = np.random.default_rng(0).standard_normal((X.shape[1], self.n_bits))
        return self

    def encode(self, X):
        return (self._check_encode_input(X) @ self.w_ > 0).astype(np.uint8)
'''
TINY = ["bits=8", "epochs=1", "dataset.n_train=64", "dataset.n_query=16", "dataset.n_database=48"]


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("HASHBENCH_CACHE", str(tmp_path / "cache"))


def records(out):
    return [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]


def test_registries_find_their_modules_without_explicit_imports():
    assert {"dsrh", "random", "itq"} <= set(entries(METHODS))
    assert issubclass(lookup(METHODS, "random"), ClassicHasher)
    with pytest.raises(HashbenchError, match=r"unknown method 'randm'; valid: random"):
        lookup(METHODS, "randm")
    with pytest.raises(HashbenchError, match=r"method 'random' has no parameter 'n_bitz'; valid: n_bits"):
        build(METHODS, dict(type="random", n_bitz=3))


def test_plugin_file_runs_by_name(tmp_path):
    path = tmp_path / "plugin_file.py"
    path.write_text(PLUGIN.format(name="plugin_from_file"))
    out = tmp_path / "out"
    assert main(["run", "methods=plugin_from_file,random", f"plugins={path}", f"out={out}", *TINY]) == 0
    got = records(out)
    assert [r["method"] for r in got] == ["plugin_from_file", "random"]
    assert 0 <= got[0]["metrics"]["map"] <= 1


def test_plugin_module_and_custom_imports(tmp_path, monkeypatch):
    (tmp_path / "plugin_module_a.py").write_text(PLUGIN.format(name="plugin_by_module"))
    (tmp_path / "plugin_module_b.py").write_text(PLUGIN.format(name="plugin_by_config"))
    monkeypatch.syspath_prepend(str(tmp_path))
    out = tmp_path / "out"
    assert main(["run", "methods=plugin_by_module", "plugins=plugin_module_a", f"out={out}", *TINY]) == 0
    from hashbench.config import CONFIG_ROOT

    cfg = tmp_path / "with_plugin.py"
    cfg.write_text(textwrap.dedent(f"""
        _base_ = [{str(CONFIG_ROOT / 'default.py')!r}]
        custom_imports = dict(imports=["plugin_module_b"], allow_failed_imports=False)
        methods = ["plugin_by_config"]
    """))
    assert main(["run", f"config={cfg}", f"out={out}", *TINY]) == 0
    assert [r["method"] for r in records(out)] == ["plugin_by_module", "plugin_by_config"]


def test_entry_point_plugin(tmp_path, monkeypatch, capsys):
    (tmp_path / "plugin_module_ep.py").write_text(PLUGIN.format(name="plugin_by_entry_point"))
    dist = tmp_path / "toyplugin-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: toyplugin\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[hashbench.plugins]\ntoy = plugin_module_ep\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert main(["list", "methods"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert "plugin_by_entry_point Toy plugin: a fixed random projection's signs." in [" ".join(l.split()) for l in lines]


def test_missing_plugin_is_a_one_line_error(capsys):
    assert main(["run", "plugins=no_such_plugin_module"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("hashbench: error: cannot import plugin 'no_such_plugin_module'")
    assert err.count("\n") == 1


THREAD_SPY = '''
import numpy as np
from threadpoolctl import threadpool_info
from hashbench.method import ClassicHasher
from hashbench.registry import METHODS

SEEN = []


@METHODS.register_module(name="thread_spy")
class ThreadSpy(ClassicHasher):
    """Records the BLAS thread counts it runs under."""

    def fit(self, X, Y=None):
        SEEN.append(("fit", sorted({i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"})))
        return self

    def encode(self, X):
        SEEN.append(("encode", sorted({i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"})))
        return np.zeros((len(X), self.n_bits), np.uint8)
'''


def test_blas_threads_limits_classic_fit_and_encode(tmp_path, monkeypatch):
    from threadpoolctl import threadpool_limits

    (tmp_path / "plugin_thread_spy.py").write_text(THREAD_SPY)
    monkeypatch.syspath_prepend(str(tmp_path))
    import importlib

    spy = importlib.import_module("plugin_thread_spy")
    with threadpool_limits(limits=3, user_api="blas"):  # the default the word must override
        assert main(["run", "methods=thread_spy", "plugins=plugin_thread_spy", f"out={tmp_path / 'a'}",
                     "blas_threads=1", *TINY]) == 0
        assert spy.SEEN == [("fit", [1]), ("encode", [1]), ("encode", [1])]
        spy.SEEN.clear()
        assert main(["run", "methods=thread_spy", "plugins=plugin_thread_spy", f"out={tmp_path / 'b'}", *TINY]) == 0
        # without the word the runner leaves the threads alone (a BLAS library loaded after the
        # outer limit may keep its own count, hence "3 in")
        assert [step for step, _ in spy.SEEN] == ["fit", "encode", "encode"]
        assert all(3 in threads for _, threads in spy.SEEN)


def test_blas_threads_must_be_a_positive_integer(capsys):
    assert main(["run", "methods=random", "blas_threads=0"]) == 2
    assert capsys.readouterr().err == "hashbench: error: blas_threads must be an integer in 1..4096; got 0\n"
