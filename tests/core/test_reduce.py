"""Fixed-order reductions: the same bits as a balanced tree of float32 additions."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from esjax.core.reduce import ordered_mean, ordered_norm, ordered_sum


def tree_sum(v: np.ndarray) -> np.float32:
    """The order ordered_sum promises, in NumPy: halves added until one is left."""
    v = np.ravel(v).astype(np.float32)
    size = 1 << max(len(v) - 1, 0).bit_length()
    v = np.pad(v, (0, size - len(v)))
    while size > 1:
        size //= 2
        v = v[:size] + v[size:]
    return v[0]


@pytest.mark.parametrize("n", [1, 2, 3, 7, 8, 9, 1000, 4545, 70_001])
def test_ordered_sum_is_the_balanced_tree_jitted_or_not(n):
    x = np.random.default_rng(n).standard_normal(n).astype(np.float32) * 100
    want = tree_sum(x)
    assert ordered_sum(jnp.asarray(x)) == want
    assert jax.jit(ordered_sum)(x) == want
    assert jax.jit(ordered_norm)(x) == np.sqrt(tree_sum(x * x))
    assert ordered_mean(jnp.asarray(x)) == want / np.float32(n)


def test_ordered_sum_of_an_empty_array_and_of_a_matrix():
    assert ordered_sum(jnp.zeros((0,), jnp.float32)) == 0
    x = np.arange(12, dtype=np.float32).reshape(3, 4)
    assert ordered_sum(x) == 66.0


def test_a_ratio_of_norms_is_a_correctly_rounded_division_on_every_cpu():
    """XLA turns y / sqrt(s) into y * rsqrt(s), an approximation whose last bits differ
    between Intel and AMD (the golden UpdateRatio did): the update ratio of step_info
    must compile to sqrt and divide only, and equal the float64 quotient rounded."""
    from esjax.core.es import step_info

    rng = np.random.default_rng(3)
    g, u, theta = (rng.standard_normal(301).astype(np.float32) for _ in range(3))
    info = jax.jit(step_info)(g, u, theta, 0.02)
    hlo = jax.jit(step_info).lower(g, u, theta, 0.02).compile().as_text()
    assert "rsqrt" not in hlo
    want = np.float32(
        np.float64(np.sqrt(tree_sum(u * u))) / np.float64(np.sqrt(tree_sum(theta * theta)))
    )
    assert np.float32(info.update_ratio) == want
