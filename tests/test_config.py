"""`key=value` words, config composition, and the schema that refuses what it does not know —
every bad value in one line, before any data is loaded."""
import textwrap

import pytest

from hashbench.config import (DATA_WORDS, PLOT_WORDS, TABLE_WORDS, build_run_config, load_file, parse_value,
                              parse_words)
from hashbench.errors import HashbenchError


def test_words_are_parsed_into_typed_values():
    w = parse_words(["methods=dsrh,random", "bits=16,64", "seeds=0", "epochs=3", "device=cpu",
                     "backbone.name=resnet18", "method.margin=2", "train.lr=3e-4", "eval.ties=index",
                     "backbone.pretrained=false", "bits=32"])
    assert w["methods"] == ["dsrh", "random"] and w["bits"] == [32] and w["seeds"] == [0]
    assert w["epochs"] == 3 and w["method.margin"] == 2 and w["train.lr"] == 3e-4
    assert w["backbone.pretrained"] is False and w["eval.ties"] == "index"
    assert parse_value("none") is None and parse_value("Null") is None and parse_value("a,b") == ["a", "b"]


@pytest.mark.parametrize("word,message", [
    ("bits=0", "bits must be a non-empty list, each value an integer in 1..1024; got 0"),
    ("bits=2048", "got 2048"),
    ("bits=abc", "got 'abc'"),
    ("bits=16.5", "got 16.5"),
    ("seeds=-1", "seeds must be a non-empty list, each value an integer in 0..4294967295; got -1"),
    ("epochs=0", "epochs must be an integer in 1..100000; got 0"),
    ("method=dsrh", "unknown key 'method'; valid: methods"),
    ("bitz=16", "unknown key 'bitz'; valid: bits"),
    ("nonsense", "expected key=value, got 'nonsense'"),
    ("bits=", "bits= has no value"),
    ("force=maybe", "force must be true or false (also yes/no, on/off, 1/0); got 'maybe'"),
    ("blas_threads=0", "blas_threads must be an integer in 1..4096; got 0"),
])
def test_bad_words_are_refused_with_the_valid_choices(word, message):
    with pytest.raises(HashbenchError) as err:
        parse_words([word])
    assert message in str(err.value)
    assert "\n" not in str(err.value)


# Every bad value the contract issue lists, each refused by name before any data is loaded.
BAD = [
    (["train.lrr=3e-4"], "unknown key 'train.lrr'; valid: train.lr"),
    (["eval.tiess=index"], "unknown key 'eval.tiess'; valid: eval.ties"),
    (["classic.featurs=pixels"], "unknown key 'classic.featurs'; valid: classic.features"),
    (["train.lr=abc"], "train.lr must be a number > 0; got 'abc'"),
    (["train.lr=-1"], "train.lr must be a number > 0; got -1"),
    (["train.batch_size=0"], "train.batch_size must be an integer >= 2; got 0"),
    (["train.batch_size=1"], "train.batch_size must be an integer >= 2; got 1"),
    (["train.batch_size=abc"], "train.batch_size must be an integer >= 2; got 'abc'"),
    (["train.epochs=0"], "train.epochs must be an integer in 1..100000; got 0"),
    (["method.margin=abc"], "method 'dsrh': method.margin must be a number >= 0 or none; got 'abc'"),
    (["dataset=features", "data_root=/x", "dataset.n_val=abc"], "dataset.n_val must be an integer >= 0; got 'abc'"),
    (["eval.tables=bogus"], "unknown metric 'bogus'"),
    (["eval.tables=p@10"], "eval.tables names 'p@10', which is not in eval.metrics"),
    (["dataset=listfile", "data_root=/x", "dataset.strict=perhaps"], "dataset.strict must be true or false"),
    (["train.precision=fp8"], "train.precision must be one of fp32, bf16, fp16; got 'fp8'"),
    (["classic.features=gabor"], "classic.features must be one of backbone, pixels; got 'gabor'"),
    (["eval.ties=sometimes"], "unknown tie policy 'sometimes'; valid: expected, index, random:SEED"),
    (["device=gpu"], "device must be auto, cpu, cuda or cuda:N; got 'gpu'"),
    (["dataset=features"], "dataset 'features' needs dataset.data_root"),
    (["method.n_bits=8"], "method.n_bits is set by bits="),
    (["backbone.type=timmm"], "unknown backbone 'timmm'; valid: timm"),
    (["method.margn=3"], "no method in this run takes method.margn; dsrh takes: margin"),
]


@pytest.mark.parametrize("words,message", BAD)
def test_every_bad_value_is_refused_in_one_line_before_data(words, message, monkeypatch):
    import hashbench.registry as registry

    real_build = registry.build

    def no_datasets(reg, cfg, **kw):  # building a dataset is loading data: it must not happen
        assert reg is not registry.DATASETS, "a dataset was built while checking the config"
        return real_build(reg, cfg, **kw)

    monkeypatch.setattr(registry, "build", no_datasets)
    with pytest.raises(HashbenchError) as err:
        build_run_config(parse_words(words))
    assert message in str(err.value) and "\n" not in str(err.value), str(err.value)


def test_booleans_accept_the_usual_words_and_nothing_else():
    for word, want in (("no", False), ("off", False), ("0", False), ("false", False), ("yes", True),
                       ("ON", True), ("1", True), ("True", True)):
        run = build_run_config(parse_words(["dataset=listfile", "data_root=/x", f"dataset.strict={word}"]))
        assert run.cfg["dataset"]["strict"] is want, word
    with pytest.raises(HashbenchError, match="must be true or false"):
        build_run_config(parse_words(["dataset=listfile", "data_root=/x", "dataset.strict=2"]))


def _config_file(tmp_path, text, name="c.py"):
    from hashbench.config import CONFIG_ROOT

    path = tmp_path / name
    path.write_text(textwrap.dedent(text).replace("DEFAULT", repr(str(CONFIG_ROOT / "default.py"))))
    return path


@pytest.mark.parametrize("body,message", [
    ("methods = 'random'", "methods must be a non-empty list, each value a string; got 'random'"),
    ("bits = 16", "bits must be a non-empty list, each value an integer in 1..1024; got 16"),
    ("seeds = [-3]", "seeds must be a non-empty list, each value an integer in 0..4294967295; got -3"),
    ("epoch = 3", "unknown top-level key 'epoch' in the config; valid:"),
    ("train = dict(lrr=1e-3)", "unknown key 'train.lrr'; valid: train.lr"),
])
def test_a_config_file_is_checked_like_words(tmp_path, body, message):
    path = _config_file(tmp_path, f"_base_ = [DEFAULT]\n{body}\n")
    with pytest.raises(HashbenchError) as err:
        build_run_config(parse_words([f"config={path}"]))
    assert message in str(err.value), str(err.value)


def test_a_broken_config_file_names_the_file_and_line(tmp_path):
    base = _config_file(tmp_path, "x = dict(a=1\ny = 2\n", "base.py")
    leaf = _config_file(tmp_path, "_base_ = ['base.py']\nmethods = ['random']\n", "leaf.py")
    with pytest.raises(HashbenchError, match=rf"config file '{base}' line 1: '\(' was never closed"):
        load_file(leaf)
    code = _config_file(tmp_path, "a = 1\nb = undefined_name + 1\n", "code.py")
    with pytest.raises(HashbenchError, match=rf"config file '{code}' line 2: NameError: name 'undefined_name'"):
        load_file(code)
    missing = _config_file(tmp_path, "_base_ = ['nothere.py']\n", "missing.py")
    with pytest.raises(HashbenchError, match=rf"config file '{missing}': its _base_ '{tmp_path / 'nothere.py'}' "
                                             "does not exist"):
        load_file(missing)
    with pytest.raises(HashbenchError, match="config file '/no/such.py' does not exist"):
        load_file("/no/such.py")


def test_unknown_method_and_dataset_name_closest_first():
    with pytest.raises(HashbenchError, match=r"unknown method 'dsrhh'; valid: dsrh"):
        build_run_config(parse_words(["methods=dsrhh"]))
    with pytest.raises(HashbenchError, match=r"unknown dataset 'multidigit'; valid: multidigits"):
        build_run_config(parse_words(["dataset=multidigit"]))


def test_composition_defaults_and_overrides():
    run = build_run_config(parse_words([]))
    cfg = run.cfg
    assert cfg["methods"] == ["dsrh"] and cfg["bits"] == [16, 32, 48, 64] and cfg["seeds"] == [0]
    assert cfg["dataset"]["type"] == "multidigits" and cfg["backbone"]["type"] == "timm"
    run = build_run_config(parse_words(["epochs=2", "dataset.n_train=50", "method.margin=3",
                                        "backbone.name=resnet18", "bits=8", "methods=dsrh,random"]))
    assert run.cfg["train"]["epochs"] == 2 and run.cfg["dataset"]["n_train"] == 50 and run.cfg["bits"] == [8]
    m = run.method_config("dsrh")
    assert m["method"] == dict(type="dsrh", margin=3) and m["backbone"]["name"] == "resnet18"
    assert run.method_config("random")["method"] == dict(type="random")  # takes no margin


def test_computed_keys_stay_out_of_the_config():
    run = build_run_config(parse_words(["methods=dsrh", "method.margin=3"]))
    assert run.dataset_name == "multidigits" and run.method_overrides == {"margin": 3}
    for cfg in (run.cfg, run.method_config("dsrh")):
        assert not {"dataset_name", "method_overrides", "method_name"} & set(cfg)


def test_method_parameter_nobody_takes_is_refused():
    with pytest.raises(HashbenchError, match=r"no method in this run takes method.margn; dsrh takes: margin"):
        build_run_config(parse_words(["methods=dsrh,random", "method.margn=3"]))


def test_dataset_word_replaces_the_whole_block(tmp_path):
    run = build_run_config(parse_words(["dataset=features", f"data_root={tmp_path}"]))
    assert run.cfg["dataset"] == dict(type="features", data_root=str(tmp_path))


def test_the_config_hash_of_existing_runs_did_not_change():
    """Existing out/ folders keep their meaning: these hashes were computed by the code before the
    schema existed (commit f25d65d), from the same words."""
    from hashbench.results import config_hash

    run = build_run_config(parse_words(["methods=dsrh,dpsh,triplet,itq,random"]))
    assert {name: config_hash(run.method_config(name)) for name in run.cfg["methods"]} == {
        "dsrh": "1fb0fa0d05a73134c31a7bdb90f79fd07336ead9925421e38c666b5c78dfa8de",
        "dpsh": "ec40a2c840c4bd73dbbc870e081bb788dbcabcf1b0c1a8183692ad2021ca70e3",
        "triplet": "deb130a4d1d9176363dd38679679bc9f8e36fe423e55fd5426101bf7e8043311",
        "itq": "a01d333285fc81ef30e7a75cfb34a3491abe347f07e82033010cb856d0a5d4a5",
        "random": "c6c39813ded631b580cee2eb9a51ac171f3d4f5fffa9029aefccb8d988e4d4ed",
    }


def test_words_of_the_commands_reading_an_out_folder():
    w = parse_words(["out=o", "format=csv", "dataset=a,b", "methods=dsrh", "bits=8,16"], TABLE_WORDS)
    assert w == dict(out="o", format="csv", dataset=["a", "b"], methods=["dsrh"], bits=[8, 16])
    assert parse_words(["ks=1,10", "to=figs"], PLOT_WORDS) == dict(ks=[1, 10], to="figs")
    assert parse_words(["force=true"])["force"] is True
    with pytest.raises(HashbenchError, match=r"unknown key 'eval.ties'; valid: "):
        parse_words(["eval.ties=index"], TABLE_WORDS)
    with pytest.raises(HashbenchError, match=r"unknown key 'fromat'; valid: format"):
        parse_words(["fromat=csv"], TABLE_WORDS)
    with pytest.raises(HashbenchError, match=r"format must be one of markdown, latex, csv, html; got 'xls'"):
        parse_words(["format=xls"], TABLE_WORDS)
    # data: its own words checked, the rest kept for the dataset's check
    assert parse_words(["dataset=listfile", "workers=2", "n_val=3", "strict=no"], DATA_WORDS) == \
        dict(dataset="listfile", workers=2, n_val=3, strict="no")
