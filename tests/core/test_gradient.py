import jax
import jax.numpy as jnp
import numpy as np
import pytest

from esjax.core.gradient import es_gradient, weighted_noise_sum
from esjax.core.noise import fill_noise_table, get_noise_batch, sample_offsets


@pytest.fixture(scope="module")
def table():
    return fill_noise_table(np.empty(50_000, np.float32), seed=3)


def test_noise_table_is_seeded_standard_normal():
    a = fill_noise_table(np.empty(200_000, np.float32), seed=7)
    b = fill_noise_table(np.empty(200_000, np.float32), seed=7)
    c = fill_noise_table(np.empty(200_000, np.float32), seed=8)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    assert abs(a.mean()) < 0.01 and abs(a.std() - 1) < 0.01


@pytest.mark.parametrize("n", [1, 7, 8, 9, 70])
def test_weighted_noise_sum_matches_loop(table, n):
    dim = 257
    rng = np.random.default_rng(n)
    offsets = rng.integers(0, len(table) - dim + 1, size=n).astype(np.int32)
    w = rng.normal(size=n).astype(np.float32)
    expected = np.zeros(dim)
    for o, wi in zip(offsets, w):
        expected += wi * table[o : o + dim].astype(np.float64)
    got = weighted_noise_sum(jnp.asarray(table), jnp.asarray(offsets), jnp.asarray(w), dim)
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4)


def test_mirrored_gradient_by_hand():
    table = jnp.arange(10, dtype=jnp.float32)
    # two noise vectors eps0 = [0, 1, 2], eps1 = [5, 6, 7]; weights w+ - w-
    offsets = jnp.array([0, 5])
    w = jnp.array([0.5 - (-0.5), -0.5 - 0.5])  # = [1, -1]
    g = es_gradient(table, offsets, w, 4, 3, noise_stdev=0.1, divide_by_stdev=False)
    np.testing.assert_allclose(g, (np.array([0, 1, 2]) - np.array([5, 6, 7])) / 4)
    g2 = es_gradient(table, offsets, w, 4, 3, noise_stdev=0.1, divide_by_stdev=True)
    np.testing.assert_allclose(g2, np.asarray(g) / 0.1, rtol=1e-6)


def test_sample_offsets_in_range_and_slices_fit():
    offs = sample_offsets(jax.random.PRNGKey(0), 1000, 100, 30)
    assert offs.min() >= 0 and offs.max() <= 70
    rows = get_noise_batch(jnp.arange(100.0), offs[:3], 30)
    np.testing.assert_allclose(rows[:, 1] - rows[:, 0], 1.0)


def test_noise_table_is_independent_of_thread_count(monkeypatch):
    import esjax.core.noise

    NOISE_CHUNK = 1 << 16  # the same chunked streams, 256 times smaller (a fast test)
    monkeypatch.setattr(esjax.core.noise, "NOISE_CHUNK", NOISE_CHUNK)
    n = 2 * NOISE_CHUNK + 1000
    one = fill_noise_table(np.empty(n, np.float32), seed=5, threads=1)
    two = fill_noise_table(np.empty(n, np.float32), seed=5, threads=2)
    np.testing.assert_array_equal(one, two)
    assert not np.array_equal(one[:1000], one[NOISE_CHUNK : NOISE_CHUNK + 1000])


def test_weighted_noise_sum_large_vectors():
    """The million-parameter path (fewer rows per step) gives the same sums."""
    dim = 300_000
    table = fill_noise_table(np.empty(400_000, np.float32), seed=9)
    offsets = np.array([0, 17, 99_999, 50, 3, 100_000], np.int32)
    w = np.array([1.0, -0.5, 0.25, 2.0, -1.0, 0.125], np.float32)
    expected = sum(wi * table[o : o + dim].astype(np.float64) for o, wi in zip(offsets, w))
    got = weighted_noise_sum(jnp.asarray(table), jnp.asarray(offsets), jnp.asarray(w), dim)
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4)
