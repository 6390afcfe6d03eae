import jax.numpy as jnp
import numpy as np
import pytest

from esjax.core.fitness import centered_ranks, noise_weights, ranks, shape_returns


def ranks_loop(x):
    """Reference: rank = #smaller + (#equal - 1) / 2, by plain Python loops."""
    flat = list(np.ravel(x))
    out = []
    for v in flat:
        smaller = sum(1 for u in flat if u < v)
        equal = sum(1 for u in flat if u == v)
        out.append(smaller + (equal - 1) / 2)
    return np.array(out).reshape(np.shape(x))


def centered_loop(x):
    n = np.size(x)
    return ranks_loop(x) / (n - 1) - 0.5


@pytest.mark.parametrize("n", [2, 3, 7, 8, 33])
def test_ranks_match_loop_reference(n):
    x = np.random.default_rng(n).normal(size=n).astype(np.float32)
    np.testing.assert_allclose(ranks(jnp.asarray(x)), ranks_loop(x))
    np.testing.assert_allclose(centered_ranks(jnp.asarray(x)), centered_loop(x), atol=1e-6)


def test_centered_ranks_hand_cases():
    # odd size: ranks 0..4 -> /4 - 0.5
    np.testing.assert_allclose(
        centered_ranks(jnp.array([3.0, -1.0, 10.0, 0.0, 5.0])), [0.0, -0.5, 0.5, -0.25, 0.25]
    )
    # even size
    np.testing.assert_allclose(
        centered_ranks(jnp.array([1.0, 4.0, 2.0, 3.0])), [-0.5, 0.5, -1 / 6, 1 / 6], atol=1e-6
    )


def test_ties_share_the_average_rank():
    x = jnp.array([5.0, 1.0, 5.0, 1.0, 3.0])
    np.testing.assert_allclose(ranks(x), [3.5, 0.5, 3.5, 0.5, 2.0])
    y = centered_ranks(x)
    assert y[0] == y[2] and y[1] == y[3]
    assert abs(float(y.sum())) < 1e-6  # still centered
    # all equal: every weight zero, nothing to learn from
    np.testing.assert_allclose(centered_ranks(jnp.ones(6)), np.zeros(6))


def test_ranks_of_pairs_rank_all_entries_together():
    x = np.array([[1.0, 6.0], [4.0, 2.0], [3.0, 5.0]], np.float32)
    np.testing.assert_allclose(centered_ranks(jnp.asarray(x)), centered_loop(x), atol=1e-6)


def test_mask_excludes_padding_from_ranking():
    x = jnp.array([[2.0, 1.0], [3.0, 0.0], [99.0, -99.0]])
    mask = jnp.array([[True, True], [True, True], [False, False]])
    got = centered_ranks(x, mask)
    np.testing.assert_allclose(
        got[:2], centered_loop(np.array([[2.0, 1.0], [3.0, 0.0]])), atol=1e-6
    )
    np.testing.assert_allclose(got[2], [0.0, 0.0])


def test_single_entry_gets_zero_weight():
    np.testing.assert_allclose(centered_ranks(jnp.array([4.2])), [0.0])


def test_shape_returns_modes():
    rets = jnp.array([[10.0, 0.0], [5.0, 7.0]])
    signs = jnp.array([[3.0, -2.0], [1.0, 1.0]])
    mask = jnp.ones((2, 2), bool)
    np.testing.assert_allclose(shape_returns(rets, signs, mask, "centered_rank", True),
                               centered_loop(np.asarray(rets)), atol=1e-6)  # fmt: skip
    np.testing.assert_allclose(shape_returns(rets, signs, mask, "sign", True), signs)
    np.testing.assert_allclose(shape_returns(rets, signs, mask, "centered_sign_rank", True),
                               centered_loop(np.asarray(signs)), atol=1e-6)  # fmt: skip
    np.testing.assert_allclose(shape_returns(rets, signs, mask, "sign", False), rets)
    with pytest.raises(ValueError, match="return_proc_mode"):
        shape_returns(rets, signs, mask, "bogus", True)


def test_noise_weights_mirrored_and_plain():
    np.testing.assert_allclose(noise_weights(jnp.array([[0.5, -0.5], [0.1, 0.2]])), [1.0, -0.1])
    np.testing.assert_allclose(noise_weights(jnp.array([[0.5], [-0.2]])), [0.5, -0.2])
