"""The update rules of make_optimizer, against the formulas in its docstring."""

import jax.numpy as jnp
import numpy as np
import optax

from esjax.core.optim import make_optimizer


def steps(opt, grads, theta):
    state, out = opt.init(theta), []
    for g in grads:
        updates, state = opt.update(jnp.asarray(g), state, theta)
        theta = optax.apply_updates(theta, updates)
        out.append(np.asarray(updates))
    return out


def adam(grads, lr, eps, starter: bool):
    """Adam in float64: optax's form (ε after the bias correction) or the starter's."""
    m = v = 0.0
    out = []
    for t, g in enumerate(grads, 1):
        m = 0.9 * m + 0.1 * g
        v = 0.999 * v + 0.001 * g * g
        if starter:
            a = lr * np.sqrt(1 - 0.999**t) / (1 - 0.9**t)
            out.append(-a * m / (np.sqrt(v) + eps))
        else:
            out.append(-lr * (m / (1 - 0.9**t)) / (np.sqrt(v / (1 - 0.999**t)) + eps))
    return out


def test_adam_puts_epsilon_after_the_bias_correction():
    rng = np.random.default_rng(0)
    theta = jnp.zeros(4)
    for scale in (1.0, 1e-7):  # ordinary and tiny gradients
        grads = [rng.normal(size=4) * scale for _ in range(5)]
        got = steps(make_optimizer("adam", 0.01, weight_decay=False), grads, theta)
        np.testing.assert_allclose(got, adam(grads, 0.01, 1e-8, starter=False), rtol=1e-4)
    # the starter's form differs for tiny early gradients (its ε acts ~32x larger at t=1)
    tiny = [np.full(4, 1e-8)]
    ours, theirs = adam(tiny, 0.01, 1e-8, False)[0], adam(tiny, 0.01, 1e-8, True)[0]
    assert abs(ours[0]) > 10 * abs(theirs[0])


def test_sgd_momentum_and_plain_ascent_and_weight_decay():
    theta = jnp.array([1.0, -2.0])
    g = [np.array([0.5, 1.0]), np.array([1.0, 0.0])]
    # v <- m v + (1 - m) g, step -lr v; L2: the gradient gains l2coeff * θ
    got = steps(make_optimizer("sgd", 0.1, momentum=0.9, weight_decay=False), g, theta)
    np.testing.assert_allclose(got[0], -0.1 * 0.1 * g[0], rtol=1e-6)
    np.testing.assert_allclose(got[1], -0.1 * (0.9 * 0.1 * g[0] + 0.1 * g[1]), rtol=1e-6)
    plain = make_optimizer("adam", 0.1, gradient_optimizer=False, l2coeff=0.5)
    np.testing.assert_allclose(steps(plain, g[:1], theta)[0], -0.1 * (g[0] + 0.5 * theta),
                               rtol=1e-6)  # fmt: skip
