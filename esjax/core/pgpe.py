"""PGPE with symmetric sampling and a learned σ per parameter (Sehnke et al. 2010), as
used with ClipUp by Toklu et al. 2020 (arXiv 2008.02387) and EvoTorch.

Each generation evaluates θ ± σ ⊙ ε for N directions ε (rows of the shared noise
table); with f± the shaped fitness of each end (centered ranks over all 2N episodes by
default) and δ = σ ⊙ ε:

    g_θ = Σ (f+ − f−) / 2 · δ / N                          (to the optimizer, e.g. ClipUp)
    g_σ = Σ (f+ + f−) / 2 · (δ² − σ²) / σ / N
    σ  <- clip(σ + σ_lr g_σ, (1 − max_change) σ, (1 + max_change) σ)

Both sums are taken over ε alone (δ = σ ⊙ ε, (δ² − σ²)/σ = σ ⊙ (ε² − 1)), so each noise
row is read from the table once per sum and no (N, P) block exists.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax

from esjax.core.es import ES, ascend, float_returns, mirrored_ask
from esjax.core.fitness import shape_returns
from esjax.core.gradient import weighted_noise_sum
from esjax.core.reduce import ordered_sum


class PGPEState(NamedTuple):
    """θ (P,) float32 (the distribution's center), the optimizer's state, and σ (P,)
    float32 (the per-parameter standard deviation)."""

    theta: jax.Array
    opt_state: optax.OptState
    sigma: jax.Array


def pgpe_gradients(table, offsets, shaped, valid, sigma, dim: int):
    """(g_θ, g_σ), each (dim,) float32, from shaped fitness ``shaped`` (N, 2) of the
    directions at ``offsets`` (N,), ``valid`` (N,) marking real rows."""
    n = jnp.maximum(valid.sum(), 1).astype(jnp.float32)
    f_plus, f_minus = shaped[:, 0], shaped[:, 1]
    w_center = jnp.where(valid, (f_plus - f_minus) / 2, 0.0)
    w_sigma = jnp.where(valid, (f_plus + f_minus) / 2, 0.0)
    g_center = sigma * weighted_noise_sum(table, offsets, w_center, dim) / n
    sum_sq = weighted_noise_sum(table, offsets, w_sigma, dim, squared=True)
    g_sigma = sigma * (sum_sq - ordered_sum(w_sigma)) / n
    return g_center, g_sigma


def make_pgpe(
    num_params: int,
    optimizer: optax.GradientTransformation,
    *,
    init_radius: float = 2.25,
    sigma_lr: float = 0.1,
    sigma_max_change: float = 0.2,
    return_proc_mode: str = "centered_rank",
    fitness_shaping: bool = True,
) -> ES:
    """PGPE for a flat θ of size ``num_params``: σ starts at ``init_radius / sqrt(P)``
    in every coordinate (a σ vector of norm ``init_radius``), learns at ``sigma_lr`` and
    changes by at most ``sigma_max_change`` (a fraction) per generation; fitness shaping
    as ``esjax.core.fitness.shape_returns``. Always mirrored: ``tell`` takes returns and
    ``sign_returns`` (N, 2) and an optional ``mask`` (N, 2)."""
    signs = jnp.array([1.0, -1.0], jnp.float32)
    sigma0 = init_radius / num_params**0.5

    def init(theta: jax.Array) -> PGPEState:
        theta = jnp.asarray(theta, jnp.float32)
        sigma = jnp.full(theta.shape, sigma0, jnp.float32)
        return PGPEState(theta, optimizer.init(theta), sigma)

    def sigma(state: PGPEState) -> jax.Array:
        return state.sigma

    def tell(state: PGPEState, table, offsets, returns, sign_returns=None, mask=None):
        returns, mask = float_returns(returns, mask)
        sign_returns = returns if sign_returns is None else sign_returns
        shaped = shape_returns(returns, sign_returns, mask, return_proc_mode, fitness_shaping)
        g, g_sigma = pgpe_gradients(table, offsets, shaped, mask[:, 0], state.sigma, num_params)
        s = state.sigma
        new_sigma = jnp.clip(s + sigma_lr * g_sigma, (1 - sigma_max_change) * s,
                             (1 + sigma_max_change) * s).astype(jnp.float32)  # fmt: skip
        theta, opt_state, info = ascend(optimizer, state.theta, state.opt_state, g, new_sigma)
        return PGPEState(theta, opt_state, new_sigma), info

    return ES(init, mirrored_ask(num_params, signs, sigma), tell, sigma)
