"""Augmented Random Search, V2-t (Mania, Guy, Recht 2018, arXiv 1803.07055, Algorithm 2).

Each generation evaluates θ ± νδ for N directions δ (rows of the shared noise table),
keeps the b directions whose better episode max(r+, r−) is highest, and steps

    θ <- θ + α / (b σ_R) Σ_{k in top b} (r+_k − r−_k) δ_k

with σ_R the standard deviation of the 2b returns kept. Returns are used raw (no ranks);
the survival-bonus shift and observation whitening are the caller's (``--reward-shift``,
the workers' running statistics). The step goes through an optax optimizer as the ascent
direction g = Σ (r+ − r−) δ / (b σ_R): plain SGD (``optax.sgd(α)``) is the paper's rule;
ClipUp or Adam may replace it.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax

from esjax.core.es import ES, ESState, ascend, float_returns, mirrored_ask, optimizer_init
from esjax.core.gradient import weighted_noise_sum
from esjax.core.reduce import ordered_sum


def top_directions_mask(returns: jax.Array, valid: jax.Array, b: int) -> jax.Array:
    """Which of the N directions (rows of ``returns`` (N, 2)) are among the ``b`` best
    by max(r+, r−), over the ``valid`` (N,) rows; ``b`` = 0 or more than the valid rows
    keeps every valid row. Ties go to the lower index. bool (N,)."""
    score = jnp.where(valid, jnp.max(returns, axis=1), -jnp.inf)
    n_valid = valid.sum()
    keep = n_valid if b <= 0 else jnp.minimum(b, n_valid)
    order = jnp.argsort(-score, stable=True)  # best first
    position = jnp.zeros_like(order).at[order].set(jnp.arange(order.shape[0]))
    return valid & (position < keep)


def ars_direction(table, offsets, returns, valid, b: int, dim: int) -> jax.Array:
    """Σ_{top b} (r+ − r−) δ / (b σ_R), shape (dim,) float32: ARS's step per unit of α.
    σ_R is the (population) std of the 2b returns kept; 0 when they are all equal."""
    kept = top_directions_mask(returns, valid, b)
    n_kept = kept.sum()
    kept2 = jnp.stack([kept, kept], axis=1)
    count = jnp.maximum(2 * n_kept, 1)
    mean = ordered_sum(jnp.where(kept2, returns, 0.0)) / count
    var = ordered_sum(jnp.where(kept2, jnp.square(returns - mean), 0.0)) / count
    std = jnp.sqrt(var)
    scale = jnp.where(std > 0, 1.0 / (jnp.maximum(n_kept, 1) * jnp.where(std > 0, std, 1.0)), 0.0)
    weights = jnp.where(kept, returns[:, 0] - returns[:, 1], 0.0) * scale
    return weighted_noise_sum(table, offsets, weights, dim)


def make_ars(
    num_params: int,
    optimizer: optax.GradientTransformation,
    *,
    noise_stdev: float = 0.03,
    top_directions: int = 0,
) -> ES:
    """ARS V2-t for a flat θ of size ``num_params``: ``noise_stdev`` is the paper's ν,
    ``top_directions`` its b (0: every direction, V2), ``optimizer`` the step rule
    (``optax.sgd(α)`` for the paper's). Always mirrored: ``tell`` takes returns (N, 2)
    (θ + νδ, θ − νδ), ``mask`` (N, 2) marking valid rows; ``sign_returns`` is ignored."""
    signs = jnp.array([1.0, -1.0], jnp.float32)

    def sigma(state: ESState) -> float:
        return noise_stdev

    def tell(state: ESState, table, offsets, returns, sign_returns=None, mask=None):
        returns, mask = float_returns(returns, mask)
        g = ars_direction(table, offsets, returns, mask[:, 0], top_directions, num_params)
        theta, opt_state, info = ascend(optimizer, state.theta, state.opt_state, g, noise_stdev)
        return ESState(theta, opt_state), info

    return ES(optimizer_init(optimizer), mirrored_ask(num_params, signs, sigma), tell, sigma)
