"""The two-stage bootstrap of hashbench.uncertainty: coverage, paired tests, Holm, reproducibility."""
import numpy as np
import pytest

from hashbench.errors import HashbenchError
from hashbench.uncertainty import holm, interval, p_value, point, replicates, rng_for


def _runs(rng, n_seeds, n_queries, mean, seed_sd, query_sd, difficulty=None):
    """Per-query scores of one method: a seed effect per training run plus query noise."""
    base = difficulty if difficulty is not None else 0.0
    return [mean + rng.normal(0, seed_sd) + base + rng.normal(0, query_sd, n_queries) for _ in range(n_seeds)]


def test_one_seed_without_query_noise_has_no_spread():
    reps = replicates([np.full(50, 0.7)], 200, np.random.default_rng(1))
    assert reps.shape == (200, 1) and np.allclose(reps, 0.7)


def test_the_query_stage_alone_has_the_textbook_variance():
    # one seed: the bootstrap of a mean, whose variance is the plug-in variance / n
    x = np.random.default_rng(2).normal(0, 1, 400)
    reps = replicates([x], 4000, np.random.default_rng(3))[:, 0]
    assert reps.mean() == pytest.approx(x.mean(), abs=0.01)
    assert reps.var() == pytest.approx(x.var() / len(x), rel=0.1)


def test_the_point_is_the_mean_over_seeds_of_the_mean_over_queries():
    a, b = np.array([1.0, 0.0, 0.0, 1.0]), np.array([0.0, 0.0])
    assert point([a, b]) == pytest.approx((0.5 + 0.0) / 2)


def test_intervals_cover_the_true_mean_at_about_the_nominal_rate():
    rng = np.random.default_rng(4)
    hits = 0
    reps_n = 300
    for _ in range(reps_n):
        scores = _runs(rng, n_seeds=10, n_queries=200, mean=0.6, seed_sd=0.03, query_sd=0.2)
        lo, hi = interval(replicates(scores, 500, rng))
        hits += bool(lo[0] <= 0.6 <= hi[0])
    assert 0.90 <= hits / reps_n <= 0.99


def test_identical_methods_give_roughly_uniform_p_values():
    rng = np.random.default_rng(5)
    ps = []
    for _ in range(300):
        difficulty = rng.normal(0, 0.2, 200)  # shared by both methods: pairing removes it
        a = _runs(rng, 10, 200, 0.6, 0.03, 0.1, difficulty)
        b = _runs(rng, 10, 200, 0.6, 0.03, 0.1, difficulty)
        reps = replicates([np.stack([x, y], 1) for x, y in zip(a, b)], 500, rng)
        ps.append(p_value(reps[:, 0] - reps[:, 1]))
    ps = np.array(ps)
    assert 0.01 <= (ps < 0.05).mean() <= 0.11
    assert 0.38 <= (ps < 0.5).mean() <= 0.62


def test_a_clearly_better_method_is_significant_and_pairing_matters():
    rng = np.random.default_rng(6)
    difficulty = rng.normal(0, 0.3, 300)
    a = _runs(rng, 3, 300, 0.62, 0.002, 0.02, difficulty)
    b = _runs(rng, 3, 300, 0.60, 0.002, 0.02, difficulty)
    reps = replicates([np.stack([x, y], 1) for x, y in zip(a, b)], 1000, rng_for(0, "cell"))
    assert p_value(reps[:, 0] - reps[:, 1]) < 0.01
    # unpaired (each method on its own draws) the shared query difficulty swamps the 0.02 gap
    ra = replicates(a, 1000, np.random.default_rng(7))[:, 0]
    rb = replicates(b, 1000, np.random.default_rng(8))[:, 0]
    assert p_value(ra - rb) > 0.05


def test_reproducible_under_a_seed_and_independent_of_other_columns():
    x = [np.random.default_rng(9).random(30) for _ in range(3)]
    one = replicates(x, 300, rng_for(0, "d", "map", 32))
    again = replicates(x, 300, rng_for(0, "d", "map", 32))
    assert np.array_equal(one, again)
    assert not np.array_equal(one, replicates(x, 300, rng_for(0, "d", "map", 64)))
    # a method's replicates are the same whether or not another method shares the draws
    both = replicates([np.stack([v, 1 - v], 1) for v in x], 300, rng_for(0, "d", "map", 32))
    np.testing.assert_allclose(both[:, 0], one[:, 0], rtol=0, atol=1e-12)


def test_p_value_by_hand():
    diffs = np.array([-1.0, 0.5, 1.0, 2.0, 3.0])  # one of five at or below zero
    assert p_value(diffs) == pytest.approx(2 * (1 + 1) / 6)
    assert p_value(np.zeros(9)) == 1.0


def test_holm_by_hand():
    # sorted 0.01 <= 0.05/4 rejected; 0.03 > 0.05/3 stops
    assert holm([0.01, 0.04, 0.03, 0.2]).tolist() == [True, False, False, False]
    assert holm([0.001, 0.02, 0.04]).tolist() == [True, True, True]
    assert holm([]).tolist() == []


def test_mismatched_methods_are_refused():
    with pytest.raises(HashbenchError, match="same methods"):
        replicates([np.zeros((4, 2)), np.zeros((4, 3))])
