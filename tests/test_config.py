"""`key=value` words, config composition and their one-line errors."""
import pytest

from hashbench.config import build_run_config, method_config, method_configs, parse_words
from hashbench.errors import HashbenchError


def test_words_are_parsed_into_typed_values():
    w = parse_words(["methods=dsrh,random", "bits=16,64", "seeds=0", "epochs=3", "device=cpu",
                     "backbone.name=resnet18", "method.margin=2", "train.lr=3e-4", "eval.ties=index",
                     "backbone.pretrained=false"])
    assert w["methods"] == ["dsrh", "random"] and w["bits"] == [16, 64] and w["seeds"] == [0]
    assert w["epochs"] == 3 and w["method.margin"] == 2 and w["train.lr"] == 3e-4
    assert w["backbone.pretrained"] is False and w["eval.ties"] == "index"


@pytest.mark.parametrize("word,message", [
    ("bits=0", "bits must be integers in 1..1024; got 0"),
    ("bits=2048", "bits must be integers in 1..1024; got 2048"),
    ("bits=abc", "bits must be integers in 1..1024; got 'abc'"),
    ("bits=16.5", "got 16.5"),
    ("seeds=-1", "seeds must be integers"),
    ("epochs=0", "epochs must be integers in 1..100000"),
    ("method=dsrh", "unknown key 'method'; valid: methods"),
    ("bitz=16", "unknown key 'bitz'; valid: bits"),
    ("nonsense", "expected key=value, got 'nonsense'"),
    ("bits=", "bits= has no value"),
])
def test_bad_words_are_refused_with_the_valid_choices(word, message):
    with pytest.raises(HashbenchError) as err:
        parse_words([word])
    assert message in str(err.value)
    assert "\n" not in str(err.value)


def test_unknown_method_and_dataset_name_closest_first():
    with pytest.raises(HashbenchError, match=r"unknown method 'dsrhh'; valid: dsrh"):
        method_config(build_run_config(parse_words([])), "dsrhh")
    with pytest.raises(HashbenchError, match=r"unknown dataset 'multidigit'; valid: multidigits"):
        build_run_config(parse_words(["dataset=multidigit"]))


def test_composition_defaults_and_overrides():
    cfg = build_run_config(parse_words([]))
    assert cfg["methods"] == ["dsrh"] and cfg["bits"] == [16, 32, 48, 64] and cfg["seeds"] == [0]
    assert cfg["dataset"]["type"] == "multidigits" and cfg["backbone"]["type"] == "timm"
    cfg = build_run_config(parse_words(["epochs=2", "dataset.n_train=50", "method.margin=3",
                                        "backbone.name=resnet18", "bits=8"]))
    assert cfg["train"]["epochs"] == 2 and cfg["dataset"]["n_train"] == 50 and cfg["bits"] == [8]
    m = method_config(cfg, "dsrh")
    assert m["method"] == dict(type="dsrh", margin=3) and m["backbone"]["name"] == "resnet18"
    assert method_config(cfg, "random")["method"] == dict(type="random")  # takes no margin


def test_method_parameter_nobody_takes_is_refused():
    cfg = build_run_config(parse_words(["methods=dsrh,random", "method.margn=3"]))
    with pytest.raises(HashbenchError, match=r"no method in this run takes method.margn; dsrh takes: margin"):
        method_configs(cfg)


def test_dataset_word_replaces_the_whole_block(tmp_path):
    cfg = build_run_config(parse_words(["dataset=features", f"data_root={tmp_path}"]))
    assert cfg["dataset"] == dict(type="features", data_root=str(tmp_path))


def test_words_of_the_commands_reading_an_out_folder():
    from hashbench.config import FILTER_LIST_KEYS, PLOT_KEYS, TABLE_KEYS

    w = parse_words(["out=o", "format=csv", "dataset=a,b", "methods=dsrh", "bits=8,16"], TABLE_KEYS, {},
                    FILTER_LIST_KEYS)
    assert w == dict(out="o", format="csv", dataset=["a", "b"], methods=["dsrh"], bits=[8, 16])
    assert parse_words(["ks=1,10", "to=figs"], PLOT_KEYS, {}, FILTER_LIST_KEYS) == dict(ks=[1, 10], to="figs")
    assert parse_words(["force=true"])["force"] is True
    with pytest.raises(HashbenchError, match=r"unknown key 'eval.ties'; valid: "):
        parse_words(["eval.ties=index"], TABLE_KEYS, {}, FILTER_LIST_KEYS)
    with pytest.raises(HashbenchError, match=r"unknown key 'fromat'; valid: format"):
        parse_words(["fromat=csv"], TABLE_KEYS, {}, FILTER_LIST_KEYS)
