"""ARS, PGPE and ClipUp against independent NumPy implementations of the papers' rules.

Each reference below is written from the paper's formulas in float64 with plain loops,
sharing nothing with esjax.core but the noise table; inputs are random, with padded
(masked) rows that must change nothing.
"""

import jax.numpy as jnp
import numpy as np
import optax
import pytest

from esjax.core.ars import make_ars
from esjax.core.clipup import clipup
from esjax.core.noise import fill_noise_table
from esjax.core.pgpe import make_pgpe

P = 7  # parameters
TABLE = fill_noise_table(np.empty(5_000, np.float32), seed=3)


def random_case(seed, n=6, pad=3):
    """θ, offsets (n + pad,), returns (n + pad, 2) with distinct values, mask."""
    rng = np.random.default_rng(seed)
    theta = rng.normal(size=P).astype(np.float32)
    offsets = rng.integers(0, len(TABLE) - P, n + pad).astype(np.int32)
    returns = rng.normal(50.0, 20.0, (n + pad, 2)).astype(np.float32)
    mask = np.zeros((n + pad, 2), bool)
    mask[:n] = True
    returns[n:] = 1e6  # padding: huge, so it would dominate any rule that looked at it
    return theta, offsets, returns, mask


def rows(offsets):
    return [TABLE[o : o + P].astype(np.float64) for o in offsets]


# -- ARS (Mania, Guy, Recht 2018), Algorithm 2, V2-t ------------------------------------
def ars_reference(theta, offsets, returns, n, b, alpha):
    """Sort directions by max(r+, r-), keep the top b, divide by the std of their 2b
    returns: θ + α / (b σ_R) Σ (r+ - r-) δ."""
    r = returns[:n].astype(np.float64)
    deltas = rows(offsets[:n])
    order = sorted(range(n), key=lambda k: -max(r[k, 0], r[k, 1]))  # stable: ties by index
    top = order[: (b or n)]
    sigma_r = np.std([r[k, j] for k in top for j in (0, 1)])
    step = sum((r[k, 0] - r[k, 1]) * deltas[k] for k in top)
    return theta.astype(np.float64) + alpha / (len(top) * sigma_r) * step


@pytest.mark.parametrize("b", [0, 1, 4])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_ars_step_matches_algorithm_2(seed, b):
    theta, offsets, returns, mask = random_case(seed)
    alpha = 0.02
    ars = make_ars(P, optax.sgd(alpha), noise_stdev=0.03, top_directions=b)
    state, info = ars.tell(ars.init(theta), jnp.asarray(TABLE), offsets, returns, None, mask)
    want = ars_reference(theta, offsets, returns, 6, b, alpha)
    np.testing.assert_allclose(np.asarray(state.theta), want, rtol=0, atol=1e-6)
    assert float(info.sigma_mean) == pytest.approx(0.03)


def test_ars_ties_and_equal_returns():
    theta, offsets, returns, mask = random_case(4)
    returns[:6] = 7.0  # every return equal: σ_R = 0, so no step rather than a NaN
    ars = make_ars(P, optax.sgd(0.1), top_directions=2)
    state, _ = ars.tell(ars.init(theta), jnp.asarray(TABLE), offsets, returns, None, mask)
    np.testing.assert_array_equal(np.asarray(state.theta), theta)


def test_ars_ask_is_mirrored_around_theta():
    import jax

    theta = np.arange(P, dtype=np.float32)
    ars = make_ars(P, optax.sgd(0.1), noise_stdev=0.5)
    offsets, cands = ars.ask(jax.random.PRNGKey(0), ars.init(theta), jnp.asarray(TABLE), 3)
    for o, (plus, minus) in zip(np.asarray(offsets), np.asarray(cands)):
        np.testing.assert_allclose(plus, theta + 0.5 * TABLE[o : o + P], atol=1e-6)
        np.testing.assert_allclose(minus, theta - 0.5 * TABLE[o : o + P], atol=1e-6)


# -- PGPE (Sehnke et al. 2010; symmetric sampling as in Toklu et al. 2020) --------------
def centered_ranks_reference(values):
    """rank / (m - 1) - 0.5 over the m values (distinct in these tests)."""
    order = np.argsort(values, kind="stable")
    r = np.empty(len(values))
    r[order] = np.arange(len(values))
    return r / (len(values) - 1) - 0.5


def pgpe_reference(theta, sigma, offsets, returns, n, lr, sigma_lr, max_change):
    """One PGPE step with plain gradient ascent on the center:
    f = centered ranks of all 2n returns; δ_i = σ ⊙ ε_i;
    g_μ = Σ (f+ - f-)/2 δ_i / n;  g_σ = Σ (f+ + f-)/2 (δ_i² - σ²)/σ / n;
    μ <- μ + lr g_μ;  σ <- clip(σ + σ_lr g_σ, (1 - c) σ, (1 + c) σ)."""
    f = centered_ranks_reference(returns[:n].astype(np.float64).ravel()).reshape(n, 2)
    sigma = sigma.astype(np.float64)
    g_mu = np.zeros(P)
    g_sigma = np.zeros(P)
    for i, eps in enumerate(rows(offsets[:n])):
        delta = sigma * eps
        g_mu += (f[i, 0] - f[i, 1]) / 2 * delta
        g_sigma += (f[i, 0] + f[i, 1]) / 2 * (delta**2 - sigma**2) / sigma
    g_mu, g_sigma = g_mu / n, g_sigma / n
    new_sigma = np.clip(sigma + sigma_lr * g_sigma, (1 - max_change) * sigma,
                        (1 + max_change) * sigma)  # fmt: skip
    return theta.astype(np.float64) + lr * g_mu, new_sigma


@pytest.mark.parametrize("max_change", [0.2, 0.9])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_pgpe_center_and_sigma_steps_match_the_paper(seed, max_change):
    theta, offsets, returns, mask = random_case(seed)
    lr, sigma_lr = 0.5, 0.3
    pgpe = make_pgpe(P, optax.sgd(lr), init_radius=1.3, sigma_lr=sigma_lr,
                     sigma_max_change=max_change)  # fmt: skip
    s0 = pgpe.init(theta)
    rng = np.random.default_rng(seed + 10)  # a σ that differs per parameter
    s0 = s0._replace(sigma=jnp.asarray(rng.uniform(0.05, 2.0, P), jnp.float32))
    state, _ = pgpe.tell(s0, jnp.asarray(TABLE), offsets, returns, returns, mask)
    want_theta, want_sigma = pgpe_reference(theta, np.asarray(s0.sigma), offsets, returns, 6,
                                            lr, sigma_lr, max_change)  # fmt: skip
    np.testing.assert_allclose(np.asarray(state.theta), want_theta, rtol=0, atol=1e-6)
    np.testing.assert_allclose(np.asarray(state.sigma), want_sigma, rtol=0, atol=1e-6)


def test_pgpe_initial_sigma_has_the_initial_radius():
    pgpe = make_pgpe(P, optax.sgd(0.1), init_radius=2.25)
    sigma = np.asarray(pgpe.init(np.zeros(P, np.float32)).sigma)
    assert np.linalg.norm(sigma) == pytest.approx(2.25, rel=1e-6)
    assert np.ptp(sigma) == 0


def test_pgpe_ask_perturbs_each_parameter_by_its_own_sigma():
    import jax

    theta = np.arange(P, dtype=np.float32)
    pgpe = make_pgpe(P, optax.sgd(0.1))
    state = pgpe.init(theta)
    sigma = np.linspace(0.1, 1.0, P).astype(np.float32)
    state = state._replace(sigma=jnp.asarray(sigma))
    offsets, cands = pgpe.ask(jax.random.PRNGKey(1), state, jnp.asarray(TABLE), 2)
    for o, (plus, minus) in zip(np.asarray(offsets), np.asarray(cands)):
        np.testing.assert_allclose(plus, theta + sigma * TABLE[o : o + P], atol=1e-6)
        np.testing.assert_allclose(minus, theta - sigma * TABLE[o : o + P], atol=1e-6)


# -- ClipUp (Toklu, Liskowski, Srivastava 2020) -----------------------------------------
def clipup_reference(theta, grads, alpha, max_speed, momentum):
    """For each ascent gradient g: v <- m v + α g / |g|; if |v| > max speed, v <- max
    speed v / |v|; θ <- θ + v. Returns every θ."""
    v = np.zeros_like(theta, np.float64)
    theta = theta.astype(np.float64)
    out = []
    for g in grads:
        v = momentum * v + alpha * g / np.linalg.norm(g)
        if np.linalg.norm(v) > max_speed:
            v = max_speed * v / np.linalg.norm(v)
        theta = theta + v
        out.append(theta)
    return out


@pytest.mark.parametrize("alpha, max_speed", [(0.075, 0.15), (0.3, 0.4), (0.01, 1.0)])
def test_clipup_velocity_rule_over_many_steps(alpha, max_speed):
    rng = np.random.default_rng(0)
    theta = rng.normal(size=P).astype(np.float32)
    grads = [rng.normal(size=P) * rng.uniform(0.01, 100) for _ in range(12)]
    opt = clipup(alpha, max_speed, 0.9)
    state, params = opt.init(jnp.asarray(theta)), jnp.asarray(theta)
    want = clipup_reference(theta, grads, alpha, max_speed, 0.9)
    for g, w in zip(grads, want):
        # optax takes the loss gradient: minus the ascent direction.
        updates, state = opt.update(jnp.asarray(-g, jnp.float32), state, params)
        params = optax.apply_updates(params, updates)
        np.testing.assert_allclose(np.asarray(params), w, rtol=0, atol=1e-6)
        assert np.linalg.norm(np.asarray(updates)) <= max_speed * (1 + 1e-6)


def test_clipup_zero_gradient_only_decays_the_velocity():
    opt = clipup(0.1, 1.0, 0.5)
    state = opt.init(jnp.zeros(P))
    up1, state = opt.update(-jnp.ones(P), state)
    up2, state = opt.update(jnp.zeros(P), state)
    np.testing.assert_allclose(np.asarray(up2), 0.5 * np.asarray(up1), atol=1e-7)
