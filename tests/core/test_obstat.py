import numpy as np

from esjax.core.obstat import (
    ObStat,
    obstat_from_batch,
    obstat_init,
    obstat_mean_std,
    obstat_merge,
)


def test_merged_worker_sums_equal_stats_of_all_observations():
    rng = np.random.default_rng(0)
    parts = [rng.normal(3.0, 2.0, size=(n, 4)) for n in (10, 250, 1)]
    merged = obstat_init(4, eps=0.0)
    for p in parts:
        merged = obstat_merge(merged, obstat_from_batch(p))
    allobs = np.concatenate(parts)
    mean, std = obstat_mean_std(merged)
    np.testing.assert_allclose(mean, allobs.mean(0), rtol=1e-5)
    np.testing.assert_allclose(std, allobs.std(0), rtol=1e-4)
    assert merged.count == 261


def test_prior_and_std_floor():
    s = obstat_init(3)  # reference prior: sum 0, sumsq 1e-2, count 1e-2
    mean, std = obstat_mean_std(s)
    np.testing.assert_allclose(mean, 0.0)
    np.testing.assert_allclose(std, 1.0)  # sqrt(1e-2 / 1e-2)
    const = obstat_from_batch(np.full((100, 3), 7.0))
    _, std = obstat_mean_std(const)
    np.testing.assert_allclose(std, 0.1, rtol=1e-6)  # variance floored at 1e-2
    wide = obstat_from_batch(np.array([[0.0, 0.0, 7.0], [0.002, 2.0, 7.0]]))
    np.testing.assert_allclose(obstat_mean_std(wide, std_floor=0.0001)[1], [0.001, 1.0, 0.0001],
                               rtol=1e-5)  # fmt: skip
    np.testing.assert_allclose(obstat_mean_std(wide)[1], [0.1, 1.0, 0.1], rtol=1e-6)


def test_merge_by_hand():
    a = ObStat(np.array([1.0]), np.array([1.0]), 1.0)
    b = ObStat(np.array([3.0]), np.array([9.0]), 1.0)
    m = obstat_merge(a, b)
    mean, std = obstat_mean_std(m)
    assert mean[0] == 2.0 and np.isclose(std[0], 1.0)
