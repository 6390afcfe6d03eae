"""OpenAI-style ES as a triple of pure functions: ``init``, ``ask``, ``tell``.

The caller decides where ``jax.jit`` goes. Nothing here does I/O or knows about
environments: ``ask`` names perturbations by noise-table offset, ``tell`` turns the
returns measured for them into one optimizer step.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax

from esjax.core.fitness import noise_weights, shape_returns
from esjax.core.gradient import es_gradient
from esjax.core.noise import get_noise_batch, perturb, sample_offsets


class ESState(NamedTuple):
    """State of the search: ``theta`` (P,) float32 and the optax state (moments)."""

    theta: jax.Array
    opt_state: optax.OptState


class TellInfo(NamedTuple):
    """Diagnostics of one update: gradient norm and |step| / |theta| (both scalars)."""

    grad_norm: jax.Array
    update_ratio: jax.Array


class ES(NamedTuple):
    """The algorithm's pure functions (see ``make_es``)."""

    init: Callable[[jax.Array], ESState]
    ask: Callable[..., tuple[jax.Array, jax.Array]]
    tell: Callable[..., tuple[ESState, TellInfo]]


def make_es(
    num_params: int,
    optimizer: optax.GradientTransformation,
    *,
    noise_stdev: float = 0.02,
    mirrored_sampling: bool = True,
    fitness_shaping: bool = True,
    return_proc_mode: str = "centered_rank",
    divide_by_stdev: bool = False,
) -> ES:
    """Build ES for a flat parameter vector of size ``num_params``.

    - ``init(theta)`` -> ESState.
    - ``ask(key, state, table, n)`` -> (offsets (n,), candidates (n, 2 or 1, P)):
      θ + σε and, with mirrored sampling, θ - σε for n noise vectors.
    - ``tell(state, table, offsets, returns, sign_returns=None, mask=None)`` with
      returns (n, 2 or 1) -> (new state, TellInfo). ``mask`` (n, 2 or 1) marks valid
      entries so callers can pad n to a fixed size.
    """
    signs = jnp.array([1.0, -1.0] if mirrored_sampling else [1.0], jnp.float32)

    def init(theta: jax.Array) -> ESState:
        theta = jnp.asarray(theta, jnp.float32)
        return ESState(theta, optimizer.init(theta))

    def ask(key, state: ESState, table: jax.Array, n: int):
        offsets = sample_offsets(key, n, table.shape[0], num_params)
        eps = get_noise_batch(table, offsets, num_params)
        candidates = perturb(state.theta, eps[:, None, :], signs[None, :, None], noise_stdev)
        return offsets, candidates

    def tell(state: ESState, table, offsets, returns, sign_returns=None, mask=None):
        returns = jnp.asarray(returns, jnp.float32)
        mask = jnp.ones(returns.shape, bool) if mask is None else mask
        sign_returns = returns if sign_returns is None else sign_returns
        shaped = shape_returns(returns, sign_returns, mask, return_proc_mode, fitness_shaping)
        g = es_gradient(
            table,
            offsets,
            noise_weights(shaped),
            mask.sum(),
            num_params,
            noise_stdev,
            divide_by_stdev,
        )
        # ES maximizes returns; optax minimizes a loss. This is the one sign flip.
        updates, opt_state = optimizer.update(-g, state.opt_state, state.theta)
        theta = optax.apply_updates(state.theta, updates)
        info = TellInfo(jnp.linalg.norm(g), jnp.linalg.norm(updates) / jnp.linalg.norm(state.theta))
        return ESState(theta, opt_state), info

    return ES(init, ask, tell)
