import jax
import jax.numpy as jnp
import numpy as np
import pytest

from esjax.core.policy import (
    NONLINEARITIES,
    NUMPY_NONLINEARITIES,
    PolicySpec,
    policy_apply,
    policy_apply_np,
    policy_init,
    unravel,
)
from esjax.rollout.worker import act


def spec(**kw):
    base = dict(ob_dim=3, ac_dim=2, hidden_dims=(4, 5), nonlin="tanh",
                ac_low=(-1.0, -2.0), ac_high=(1.0, 2.0))  # fmt: skip
    return PolicySpec(**{**base, **kw})


def reference_action(s: PolicySpec, flat, ob, mean, std):
    """The policy written out in float64 from the OpenAI starter's definition, sharing
    no code with esjax: normalize and clip at ±5, dense layers with the nonlinearity,
    a linear output layer, and for discretized actions the arg-max bin of each action
    dimension mapped uniformly onto [low, high]."""
    flat = np.asarray(flat, np.float64)
    x = np.asarray(ob, np.float64)
    if s.normalize_obs:
        x = np.clip((x - np.float64(mean)) / np.float64(std), -5.0, 5.0)
    out = s.ac_dim * s.ac_bins if s.ac_bins else s.ac_dim
    dims = [s.ob_dim, *s.hidden_dims, out]
    nonlin = {
        "tanh": np.tanh,
        "relu": lambda v: np.maximum(v, 0.0),
        "lrelu": lambda v: np.maximum(v, 0.2 * v),  # the starter's lrelu(x, leak=0.2)
        "elu": lambda v: np.where(v > 0, v, np.exp(v) - 1.0),
    }[s.nonlin]
    pos = 0
    for layer, (n_in, n_out) in enumerate(zip(dims[:-1], dims[1:])):
        w = flat[pos : pos + n_in * n_out].reshape(n_in, n_out)
        b = flat[pos + n_in * n_out : pos + n_in * n_out + n_out]
        pos += n_in * n_out + n_out
        x = x @ w + b
        if layer < len(dims) - 2:
            x = nonlin(x)
    if not s.ac_bins:
        return x
    idx = np.argmax(x.reshape(s.ac_dim, s.ac_bins), axis=1)
    low, high = np.array(s.ac_low), np.array(s.ac_high)
    return low + idx / (s.ac_bins - 1) * (high - low)


CASES = [
    dict(nonlin=n, ac_bins=b, normalize_obs=norm)
    for n in sorted(NONLINEARITIES)
    for b in (0, 4)
    for norm in (True, False)
]


@pytest.mark.parametrize("case", CASES, ids=lambda c: "-".join(map(str, c.values())))
def test_policy_matches_an_independent_float64_forward_pass(case):
    s = spec(**case)
    rng = np.random.default_rng(0)
    mean = np.array([0.1, 0.0, -1.0], np.float32)
    std = np.array([0.5, 0.2, 2.0], np.float32)
    for _ in range(20):
        flat = rng.normal(size=s.num_params).astype(np.float32)
        # observations far outside mean ± 5 std exercise the clipping
        ob = (rng.normal(size=3) * [0.5, 3.0, 20.0]).astype(np.float32)
        want = reference_action(s, flat, ob, mean, std)
        jax_out = policy_apply(s, unravel(s, jnp.asarray(flat)), ob, mean, std)
        np_out = policy_apply_np(s, unravel(s, flat), ob, mean, std)
        # discretized: the same bin (a neighbour is 1/3 of the range away), up to rounding
        tol = 1e-6 if s.ac_bins else 2e-5
        np.testing.assert_allclose(jax_out, want, rtol=tol, atol=tol)
        np.testing.assert_allclose(np_out, want, rtol=tol, atol=tol)


def test_normalization_clips_at_5_by_hand():
    s = spec(hidden_dims=(), ac_dim=3, ac_low=(-1.0,) * 3, ac_high=(1.0,) * 3)
    eye = np.concatenate([np.eye(3).ravel(), np.zeros(3)]).astype(np.float32)
    ob = np.array([100.0, -100.0, 1.0], np.float32)
    out = policy_apply(s, unravel(s, jnp.asarray(eye)), ob, jnp.zeros(3), jnp.ones(3))
    np.testing.assert_array_equal(out, [5.0, -5.0, 1.0])
    raw = policy_apply(s._replace(normalize_obs=False), unravel(s, jnp.asarray(eye)), ob,
                       jnp.zeros(3), jnp.ones(3))  # fmt: skip
    np.testing.assert_array_equal(raw, [100.0, -100.0, 1.0])


def test_nonlinearities_by_hand():
    x = np.array([-2.0, -0.5, 0.0, 1.5], np.float32)
    want = {
        "tanh": np.tanh(x.astype(np.float64)),
        "relu": [0.0, 0.0, 0.0, 1.5],
        "lrelu": [-0.4, -0.1, 0.0, 1.5],  # slope 0.2 below zero, as the starter
        "elu": [np.expm1(-2.0), np.expm1(-0.5), 0.0, 1.5],
    }
    for name, expected in want.items():
        np.testing.assert_allclose(NONLINEARITIES[name](jnp.asarray(x)), expected, rtol=1e-6)
        np.testing.assert_allclose(NUMPY_NONLINEARITIES[name](x), expected, rtol=1e-6)


def test_discretized_actions_by_hand():
    s = spec(hidden_dims=(), ob_dim=10, ac_bins=5, normalize_obs=False)
    # identity weights: the observation is the logits.
    # dim 0: bin 4 of 5 -> high 1; dim 1: bin 1 of 5 -> -2 + 1/4 * 4 = -1
    flat = np.concatenate([np.eye(10).ravel(), np.zeros(10)]).astype(np.float32)
    logits = np.array([0.0, 0.1, 0.2, 0.3, 0.9, 0.0, 2.0, 1.0, 0.5, -1.0], np.float32)
    np.testing.assert_array_equal(policy_apply(s, unravel(s, flat), logits, 0, 1), [1.0, -1.0])
    np.testing.assert_array_equal(policy_apply_np(s, unravel(s, flat), logits, 0, 1), [1.0, -1.0])


def test_act_adds_the_noise_then_clips_to_the_bounds():
    s = spec(hidden_dims=(), ob_dim=2, normalize_obs=False)  # actions = observations
    flat = np.concatenate([np.eye(2).ravel(), np.zeros(2)]).astype(np.float32)
    params = [(np.stack([w, w]), np.stack([b, b])) for w, b in unravel(s, flat)]
    obs = np.array([[0.5, 1.0], [0.9, -1.9]], np.float32)
    noise = np.array([[1.0, -2.0], [2.0, -3.0]], np.float32)
    got = act(s, params, obs, 0, 1, np.float32(0.1) * noise)
    np.testing.assert_allclose(got, [[0.6, 0.8], [1.0, -2.0]], rtol=1e-6)  # row 1 clipped
    np.testing.assert_array_equal(act(s, params, obs, 0, 1), obs)  # no noise: the policy
    only_row_0 = act(s, params, obs, 0, 1, np.float32(0.1) * noise, np.array([True, False]))
    np.testing.assert_allclose(only_row_0, [[0.6, 0.8], [0.9, -1.9]], rtol=1e-6)


def test_init_normalized_columns_small_output_layer():
    s = spec(hidden_dims=(64,))
    layers = unravel(s, policy_init(jax.random.PRNGKey(1), s))
    np.testing.assert_allclose(np.linalg.norm(layers[0][0], axis=0), 1.0, rtol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(layers[1][0], axis=0), 0.01, rtol=1e-5)
    assert all(float(jnp.abs(b).max()) == 0.0 for _, b in layers)


def test_output_init_std_sets_the_output_columns_norm_and_leaves_the_hidden_layers():
    s = spec(hidden_dims=(64,))
    small = unravel(s, policy_init(jax.random.PRNGKey(1), s))
    large = unravel(s, policy_init(jax.random.PRNGKey(1), s, output_std=1.0))
    np.testing.assert_array_equal(large[0][0], small[0][0])
    np.testing.assert_allclose(np.linalg.norm(large[1][0], axis=0), 1.0, rtol=1e-5)
    np.testing.assert_allclose(large[1][0], 100 * np.asarray(small[1][0]), rtol=1e-5)


def test_unravel_roundtrip_and_param_count():
    s = spec()
    assert s.num_params == 3 * 4 + 4 + 4 * 5 + 5 + 5 * 2 + 2
    flat = jnp.arange(s.num_params, dtype=jnp.float32)
    layers = unravel(s, flat)
    back = jnp.concatenate([jnp.concatenate([w.ravel(), b]) for w, b in layers])
    np.testing.assert_array_equal(back, flat)
