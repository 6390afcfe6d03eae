import jax
import jax.numpy as jnp
import numpy as np
import pytest

from esjax.policy import (
    NONLINEARITIES,
    PolicySpec,
    discretize,
    policy_apply,
    policy_apply_np,
    policy_init,
    unravel,
)

NP_NONLIN = {
    "tanh": np.tanh,
    "relu": lambda x: np.maximum(x, 0),
    "lrelu": lambda x: np.where(x > 0, x, 0.01 * x),
    "elu": lambda x: np.where(x > 0, x, np.exp(x) - 1),
}


def spec(**kw):
    base = dict(ob_dim=3, ac_dim=2, hidden_dims=(4, 5), nonlin="tanh",
                ac_low=(-1.0, -2.0), ac_high=(1.0, 2.0))  # fmt: skip
    return PolicySpec(**{**base, **kw})


def numpy_forward(s, flat, ob, mean, std):
    x = np.clip((ob - mean) / std, -5, 5) if s.normalize_obs else ob
    layers, start = [], 0
    for i, o in s.layer_shapes:
        w = flat[start : start + i * o].reshape(i, o)
        start += i * o
        layers.append((w, flat[start : start + o]))
        start += o
    for w, b in layers[:-1]:
        x = NP_NONLIN[s.nonlin](x @ w + b)
    return x @ layers[-1][0] + layers[-1][1]


@pytest.mark.parametrize("nonlin", sorted(NONLINEARITIES))
def test_forward_matches_numpy_for_every_nonlinearity(nonlin):
    s = spec(nonlin=nonlin)
    flat = np.random.default_rng(0).normal(size=s.num_params).astype(np.float32)
    ob = np.array([0.3, -2.0, 1.5], np.float32)
    mean, std = np.array([0.1, 0.0, -1.0], np.float32), np.array([0.5, 0.2, 2.0], np.float32)
    got = policy_apply(s, unravel(s, jnp.asarray(flat)), ob, mean, std)
    np.testing.assert_allclose(got, numpy_forward(s, flat, ob, mean, std), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("nonlin", sorted(NONLINEARITIES))
@pytest.mark.parametrize("bins", [0, 3])
def test_numpy_batch_with_per_row_weights_matches_jax(nonlin, bins):
    """The workers' NumPy path: row k of the batch uses its own weights, and gives what
    the JAX policy gives for that row (up to float rounding)."""
    s = spec(nonlin=nonlin, ac_bins=bins)
    rng = np.random.default_rng(1)
    flats = rng.normal(size=(4, s.num_params)).astype(np.float32)
    obs = rng.normal(size=(4, 3)).astype(np.float32) * 3
    mean, std = np.array([0.1, 0.0, -1.0], np.float32), np.array([0.5, 0.2, 2.0], np.float32)
    per_row = [unravel(s, f) for f in flats]
    stacked = [tuple(np.stack([p[i][j] for p in per_row]) for j in (0, 1)) for i in range(3)]
    got = policy_apply_np(s, stacked, obs, mean, std)
    assert got.shape == (4, 2) and got.dtype == np.float32
    for k in range(4):
        want = policy_apply(s, unravel(s, jnp.asarray(flats[k])), obs[k], mean, std)
        np.testing.assert_allclose(got[k], want, rtol=1e-5, atol=1e-5)
        single = policy_apply_np(s, per_row[k], obs[k], mean, std)  # unbatched form
        np.testing.assert_array_equal(single, got[k])


def test_elu_is_elu_not_leaky_relu():
    x = jnp.array([-2.0, -0.5, 0.0, 1.5])
    np.testing.assert_allclose(NONLINEARITIES["elu"](x), np.exp([-2.0, -0.5]).tolist() and
                               [np.exp(-2) - 1, np.exp(-0.5) - 1, 0.0, 1.5], rtol=1e-6)  # fmt: skip


def test_observation_normalization_clips_at_5():
    s = spec(hidden_dims=(), ac_dim=3, ac_low=(-1.0,) * 3, ac_high=(1.0,) * 3)
    eye = np.concatenate([np.eye(3).ravel(), np.zeros(3)]).astype(np.float32)
    out = policy_apply(s, unravel(s, jnp.asarray(eye)), jnp.array([100.0, -100.0, 1.0]),
                       jnp.zeros(3), jnp.ones(3))  # fmt: skip
    np.testing.assert_allclose(out, [5.0, -5.0, 1.0])
    raw = policy_apply(s._replace(normalize_obs=False), unravel(s, jnp.asarray(eye)),
                       jnp.array([100.0, -100.0, 1.0]), jnp.zeros(3), jnp.ones(3))  # fmt: skip
    np.testing.assert_allclose(raw, [100.0, -100.0, 1.0])


def test_discretized_actions_by_hand():
    s = spec(ac_bins=5)
    # dim 0: bin 4 of 5 -> high; dim 1: bin 1 of 5 -> -2 + 1/4 * 4 = -1
    logits = jnp.array([0.0, 0.1, 0.2, 0.3, 0.9, 0.0, 2.0, 1.0, 0.5, -1.0])
    np.testing.assert_allclose(discretize(logits, s), [1.0, -1.0])
    flat = policy_init(jax.random.PRNGKey(0), s)
    assert flat.shape == (s.num_params,)
    a = policy_apply(s, unravel(s, flat), jnp.ones(3), jnp.zeros(3), jnp.ones(3))
    grid0 = np.linspace(-1, 1, 5)
    grid1 = np.linspace(-2, 2, 5)
    assert np.isclose(grid0, a[0]).any() and np.isclose(grid1, a[1]).any()


def test_init_normalized_columns_small_output_layer():
    s = spec(hidden_dims=(64,))
    layers = unravel(s, policy_init(jax.random.PRNGKey(1), s))
    np.testing.assert_allclose(np.linalg.norm(layers[0][0], axis=0), 1.0, rtol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(layers[1][0], axis=0), 0.01, rtol=1e-5)
    assert all(float(jnp.abs(b).max()) == 0.0 for _, b in layers)


def test_unravel_roundtrip_and_param_count():
    s = spec()
    assert s.num_params == 3 * 4 + 4 + 4 * 5 + 5 + 5 * 2 + 2
    flat = jnp.arange(s.num_params, dtype=jnp.float32)
    layers = unravel(s, flat)
    back = jnp.concatenate([jnp.concatenate([w.ravel(), b]) for w, b in layers])
    np.testing.assert_array_equal(back, flat)
