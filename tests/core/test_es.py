import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from esjax.core.es import make_es
from esjax.core.noise import fill_noise_table
from esjax.core.optim import make_optimizer

DIM = 5


@pytest.fixture(scope="module")
def table():
    return jnp.asarray(fill_noise_table(np.empty(10_000, np.float32), seed=1))


def manual_gradient(table, offsets, returns, mirrored=True):
    """Centered-rank mirrored ES gradient by plain loops (no ties in test data)."""
    flat = returns.ravel()
    order = np.argsort(flat)
    r = np.empty(flat.size)
    r[order] = np.arange(flat.size)
    shaped = (r / (flat.size - 1) - 0.5).reshape(returns.shape)
    g = np.zeros(DIM)
    for i, o in enumerate(offsets):
        w = shaped[i, 0] - shaped[i, 1] if mirrored else shaped[i, 0]
        g += w * np.asarray(table[o : o + DIM])
    return g / returns.size


def test_plain_ascent_with_weight_decay(table):
    lr, l2 = 0.1, 0.01
    opt = make_optimizer("adam", lr, gradient_optimizer=False, l2coeff=l2)
    es = make_es(DIM, opt, noise_stdev=0.02)
    theta0 = jnp.array([1.0, -2.0, 0.5, 0.0, 3.0])
    offsets = np.array([10, 200, 3000])
    rets = np.array([[1.0, 2.0], [5.0, -1.0], [0.5, 3.0]], np.float32)
    state, _ = es.tell(es.init(theta0), table, jnp.asarray(offsets), jnp.asarray(rets))
    g = manual_gradient(table, offsets, rets)
    # the weights decay toward zero (not a step scaled by l2coeff, the notebook's bug)
    expected = np.asarray(theta0) + lr * (g - l2 * np.asarray(theta0))
    np.testing.assert_allclose(state.theta, expected, rtol=1e-5, atol=1e-6)


def test_adam_matches_reference_adam(table):
    lr, l2 = 0.01, 0.005
    es = make_es(DIM, make_optimizer("adam", lr, l2coeff=l2), noise_stdev=0.02)
    theta = np.array([1.0, -2.0, 0.5, 0.1, 3.0])
    state = es.init(jnp.asarray(theta, jnp.float32))
    m = np.zeros(DIM)
    v = np.zeros(DIM)
    rng = np.random.default_rng(0)
    for t in range(1, 4):
        offsets = rng.integers(0, 9000, 4)
        rets = rng.normal(size=(4, 2)).astype(np.float32)
        state, _ = es.tell(state, table, jnp.asarray(offsets), jnp.asarray(rets))
        grad = -manual_gradient(table, offsets, rets) + l2 * theta  # OpenAI es.py
        a = lr * np.sqrt(1 - 0.999**t) / (1 - 0.9**t)
        m = 0.9 * m + 0.1 * grad
        v = 0.999 * v + 0.001 * grad * grad
        theta = theta - a * m / (np.sqrt(v) + 1e-8)
    np.testing.assert_allclose(state.theta, theta, rtol=2e-4, atol=1e-5)


def test_sgd_momentum_matches_reference(table):
    lr, mom = 0.05, 0.9
    es = make_es(DIM, make_optimizer("sgd", lr, momentum=mom, weight_decay=False))
    theta = np.array([1.0, -2.0, 0.5, 0.1, 3.0])
    state = es.init(jnp.asarray(theta, jnp.float32))
    v = np.zeros(DIM)
    for t in range(3):
        offsets = np.array([t, 100 + t, 5000 + t])
        rets = np.array([[t + 0.25, 1.0], [2.0, -1.0], [0.5, 3.0 + t]], np.float32)
        state, _ = es.tell(state, table, jnp.asarray(offsets), jnp.asarray(rets))
        v = mom * v + (1 - mom) * (-manual_gradient(table, offsets, rets))
        theta = theta - lr * v
    np.testing.assert_allclose(state.theta, theta, rtol=1e-5, atol=1e-6)


def test_padding_with_mask_does_not_change_the_update(table):
    es = make_es(DIM, make_optimizer("adam", 0.01))
    s0 = es.init(jnp.ones(DIM))
    offsets = jnp.array([1, 2, 3])
    rets = jnp.array([[1.0, 2.0], [3.0, 0.0], [2.5, 1.5]])
    a, _ = es.tell(s0, table, offsets, rets)
    pad_off = jnp.array([1, 2, 3, 0, 0])
    pad_ret = jnp.concatenate([rets, jnp.array([[100.0, -100.0], [7.0, 7.0]])])
    mask = jnp.array([[1, 1], [1, 1], [1, 1], [0, 0], [0, 0]], bool)
    b, _ = es.tell(s0, table, pad_off, pad_ret, mask=mask)
    np.testing.assert_allclose(a.theta, b.theta, rtol=1e-6)


def test_unmirrored_and_ask_candidates(table):
    es = make_es(DIM, optax.sgd(1.0), noise_stdev=0.5, mirrored_sampling=False)
    state = es.init(jnp.zeros(DIM))
    offsets, cands = es.ask(jax.random.PRNGKey(0), state, table, 4)
    assert cands.shape == (4, 1, DIM)
    np.testing.assert_allclose(cands[2, 0], 0.5 * table[offsets[2] : offsets[2] + DIM])
    mirrored = make_es(DIM, optax.sgd(1.0), noise_stdev=0.5)
    _, c2 = mirrored.ask(jax.random.PRNGKey(0), state, table, 4)
    np.testing.assert_allclose(c2[:, 0], -c2[:, 1])


def test_es_optimizes_a_toy_objective(table):
    """The docs' functional example (docs/api.md): maximize -|x - 3|^2 in 5 dimensions."""
    es = make_es(DIM, make_optimizer("adam", 0.1, weight_decay=False), noise_stdev=0.1)
    state = es.init(jnp.zeros(DIM))
    key = jax.random.PRNGKey(0)
    tell = jax.jit(es.tell)
    for _ in range(300):
        key, sub = jax.random.split(key)
        offsets, cands = es.ask(sub, state, table, 32)
        state, _ = tell(state, table, offsets, -jnp.sum((cands - 3.0) ** 2, axis=-1))
    np.testing.assert_allclose(state.theta, 3.0, atol=0.15)
