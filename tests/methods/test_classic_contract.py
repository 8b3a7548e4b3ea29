"""The estimator contract, checked on every registered classic method (new ones are picked up)."""
from __future__ import annotations

import numpy as np
import pytest

from hashbench.errors import HashbenchError
from hashbench.method import ClassicHasher, method_class
from hashbench.registry import METHODS, entries

CLASSIC = {name: obj for name, obj in entries(METHODS).items() if issubclass(method_class(obj), ClassicHasher)}
N_BITS = 8


def _tiny(seed=0, n=150, d=24, n_labels=5):
    """Seeded features (n, d) and multi-hot labels (n, C), every row with at least one label."""
    rng = np.random.default_rng(seed)
    Y = (rng.random((n, n_labels)) < 0.3).astype(np.uint8)
    Y[np.arange(n), rng.integers(0, n_labels, n)] = 1
    X = Y @ rng.normal(size=(n_labels, d)) * 2.0 + rng.normal(size=(n, d))
    return X, Y


def test_the_baselines_are_registered():
    assert {"lsh", "pcah", "itq", "sh", "itq_cca", "ksh"} <= set(CLASSIC)
    assert {name for name, cls in CLASSIC.items() if cls.supervised} >= {"itq_cca", "ksh"}


@pytest.mark.parametrize("name", sorted(CLASSIC))
def test_init_only_stores_parameters(name):
    est = CLASSIC[name](N_BITS, random_state=3)
    assert not [k for k in vars(est) if k.endswith("_")], "fitted attributes set in __init__"
    params = est.get_params()
    assert params["n_bits"] == N_BITS and params["random_state"] == 3
    clone = CLASSIC[name](**params)
    assert clone.get_params() == params


@pytest.mark.parametrize("name", sorted(CLASSIC))
def test_codes_shape_dtype_values(name):
    X, Y = _tiny()
    est = CLASSIC[name](N_BITS, random_state=0)
    assert est.fit(X, Y) is est
    assert est.n_features_in_ == X.shape[1]
    X_new, _ = _tiny(seed=1, n=37)
    codes = est.encode(X_new)
    assert codes.shape == (37, N_BITS)
    assert codes.dtype == np.uint8
    assert set(np.unique(codes)) <= {0, 1}


@pytest.mark.parametrize("name", sorted(CLASSIC))
def test_same_seed_same_codes(name):
    X, Y = _tiny()
    a = CLASSIC[name](N_BITS, random_state=7).fit(X, Y).encode(X)
    b = CLASSIC[name](N_BITS, random_state=7).fit(X, Y).encode(X)
    np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("name", sorted(CLASSIC))
def test_encode_before_fit_raises(name):
    X, _ = _tiny()
    with pytest.raises(HashbenchError, match="not fitted"):
        CLASSIC[name](N_BITS, random_state=0).encode(X)


@pytest.mark.parametrize("name", sorted(CLASSIC))
def test_wrong_feature_count_raises(name):
    X, Y = _tiny()
    est = CLASSIC[name](N_BITS, random_state=0).fit(X, Y)
    with pytest.raises(HashbenchError, match=str(X.shape[1])):
        est.encode(X[:, :-1])


@pytest.mark.parametrize("name", sorted(n for n, c in CLASSIC.items() if c.supervised))
def test_supervised_methods_refuse_missing_labels(name):
    X, _ = _tiny()
    with pytest.raises(HashbenchError, match="labels"):
        CLASSIC[name](N_BITS, random_state=0).fit(X)


@pytest.mark.parametrize("name", sorted(n for n, c in CLASSIC.items() if not c.supervised))
def test_unsupervised_methods_ignore_labels(name):
    X, Y = _tiny()
    a = CLASSIC[name](N_BITS, random_state=0).fit(X).encode(X)
    b = CLASSIC[name](N_BITS, random_state=0).fit(X, Y).encode(X)
    np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("name", sorted(CLASSIC))
def test_scikit_learn_estimator_machinery(name):
    """get_params / set_params / clone / repr come from sklearn's BaseEstimator, and a clone fits alike."""
    from sklearn.base import clone

    X, Y = _tiny()
    est = CLASSIC[name](N_BITS, random_state=4)
    twin = clone(est)
    assert twin is not est and twin.get_params() == est.get_params()
    assert repr(est).startswith(f"{CLASSIC[name].__name__}(") and "random_state=4" in repr(est)
    assert est.set_params(random_state=5) is est and est.random_state == 5
    np.testing.assert_array_equal(clone(est).fit(X, Y).encode(X), est.fit(X, Y).encode(X))


@pytest.mark.parametrize("name", sorted(CLASSIC))
def test_every_parameter_is_declared(name):
    import inspect

    from hashbench.params import constraints_of

    params = set(inspect.signature(CLASSIC[name]).parameters)
    assert params <= set(constraints_of(CLASSIC[name])), sorted(params - set(constraints_of(CLASSIC[name])))


@pytest.mark.parametrize("name,params,message", [
    ("itq", dict(n_iter=-1), "ITQ: n_iter must be an integer >= 0; got -1"),
    ("itq", dict(n_iter=2.5), "ITQ: n_iter must be an integer >= 0; got 2.5"),
    ("itq_cca", dict(reg=0.0), "ITQCCA: reg must be a number > 0; got 0.0"),
    ("itq_cca", dict(fill="zeros"), "ITQCCA: fill must be one of pca, raise; got 'zeros'"),
    ("ksh", dict(n_anchors=0), "KSH: n_anchors must be an integer >= 1; got 0"),
    ("lsh", dict(center=2), "LSH: center must be true or false (also yes/no, on/off, 1/0); got 2"),
    ("pcah", dict(random_state=-2), "PCAH: random_state must be an integer in 0..4294967295 or none; got -2"),
    ("sh", dict(n_bits=0), "SH: n_bits must be an integer in 1..1024; got 0"),
])
def test_bad_parameters_are_refused_at_fit_from_the_declared_constraints(name, params, message):
    X, Y = _tiny()
    kwargs = dict(dict(n_bits=N_BITS, random_state=0), **params)
    with pytest.raises(HashbenchError) as err:
        CLASSIC[name](**kwargs).fit(X, Y)
    assert str(err.value) == message


# -- degenerate training data: one policy (ClassicHasher._check_fit_input) --------------------
LEARNING = sorted(n for n, c in CLASSIC.items() if method_class(c).needs_features and n != "lsh")


def _one_line_refusal(name, X, Y, *needles):
    with pytest.raises(HashbenchError) as err:
        CLASSIC[name](N_BITS, random_state=0).fit(X, Y)
    message = str(err.value)
    assert "\n" not in message and message.startswith(f"{method_class(CLASSIC[name]).__name__}.fit: ")
    for needle in needles:
        assert needle in message, message
    return message


@pytest.mark.parametrize("name", LEARNING)
def test_a_single_training_row_is_refused(name):
    X, Y = _tiny()
    _one_line_refusal(name, X[:1], Y[:1], "1 training row", "at least 2")


@pytest.mark.parametrize("name", LEARNING)
def test_identical_training_rows_are_refused(name):
    X, Y = _tiny()
    X = np.repeat(X[:1], len(X), axis=0)
    _one_line_refusal(name, X, Y, f"all {len(X)} training rows are identical", "differ in at least one feature")


@pytest.mark.parametrize("name", sorted(CLASSIC))
def test_some_constant_features_still_fit(name):
    X, Y = _tiny()
    X[:, ::3] = 5.0                         # 8 of 24 features constant, the other 16 vary
    est = CLASSIC[name](N_BITS, random_state=0).fit(X, Y)
    codes = est.encode(X)
    assert codes.shape == (len(X), N_BITS)
    if name != "random":
        assert len(np.unique(codes, axis=0)) > 1


@pytest.mark.parametrize("name", ["pcah", "itq"])
def test_fewer_directions_of_variance_than_bits_is_refused(name):
    X, Y = _tiny()
    X = X[:, :3] @ np.random.default_rng(0).normal(size=(3, X.shape[1]))   # rank 3 < 8 bits
    _one_line_refusal(name, X, Y, "only 3 directions of variance", "use at most 3 bits")


def test_lsh_learns_nothing_from_the_values_so_it_accepts_degenerate_rows():
    X, _ = _tiny()
    lsh = CLASSIC["lsh"](N_BITS, random_state=0).fit(X[:1])
    np.testing.assert_array_equal(lsh.mean_, X[0])
    assert len(np.unique(lsh.encode(X), axis=0)) > 1     # hyperplanes through that point still split


@pytest.mark.parametrize("name", sorted(CLASSIC))
def test_chunked_encode_matches_one_chunk_and_reads_float32_without_copying(name):
    X, Y = _tiny(n=300)
    est = CLASSIC[name](N_BITS, random_state=0).fit(X, Y)
    X32 = X.astype(np.float32)
    X32.setflags(write=False)                  # as a read-only memory map: encode must not write
    whole = est.encode(X32)
    est.encode_chunk_rows = 7                  # 300 rows in chunks of 7 (the last one of 6)
    seen = []
    if name != "random":
        inner = est._encode
        est._encode = lambda chunk: (seen.append((len(chunk), chunk.dtype)), inner(chunk))[1]
    chunked = est.encode(X32)
    if name == "random":                       # fresh coins per call, by design
        assert chunked.shape == whole.shape
    else:
        np.testing.assert_array_equal(chunked, whole)
        assert seen == [(7, np.float64)] * 42 + [(6, np.float64)]
        np.testing.assert_array_equal(est.encode(X32.astype(np.float64)), whole)
