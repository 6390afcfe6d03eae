"""OpenAI-style ES as pure functions: ``init``, ``ask``, ``tell`` (and ``sigma``).

The caller decides where ``jax.jit`` goes. Nothing here does I/O or knows about
environments: ``ask`` names perturbations by noise-table offset, ``tell`` turns the
returns measured for them into one optimizer step. Every strategy of esjax (this one,
``esjax.core.ars``, ``esjax.core.pgpe``) is an ``ES`` of the same four functions, so the
trainer, the workers and the checkpoints treat them alike.
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
from esjax.core.reduce import ordered_mean, ordered_norm


class ESState(NamedTuple):
    """State of the search: ``theta`` (P,) float32 and the optax state (moments)."""

    theta: jax.Array
    opt_state: optax.OptState


class TellInfo(NamedTuple):
    """Diagnostics of one update (scalars): the norm of the ascent direction handed to the
    optimizer, |step| / |theta|, and the mean perturbation scale σ after the update."""

    grad_norm: jax.Array
    update_ratio: jax.Array
    sigma_mean: jax.Array


class ES(NamedTuple):
    """A strategy's pure functions (see ``make_es``, ``make_ars``, ``make_pgpe``).

    ``sigma(state)`` is the scale the workers perturb θ with, θ ± sigma ⊙ ε: a Python
    float for a fixed σ, or an array (P,) float32 for a learned σ per parameter."""

    init: Callable[[jax.Array], NamedTuple]
    ask: Callable[..., tuple[jax.Array, jax.Array]]
    tell: Callable[..., tuple[NamedTuple, TellInfo]]
    sigma: Callable[[NamedTuple], float | jax.Array]


def step_info(g: jax.Array, updates: jax.Array, theta: jax.Array, sigma) -> TellInfo:
    """TellInfo of a step ``updates`` taken from ``theta`` along ascent direction ``g``."""
    return TellInfo(ordered_norm(g), ordered_norm(updates) / ordered_norm(theta),
                    ordered_mean(jnp.asarray(sigma, jnp.float32)))  # fmt: skip


def ascend(optimizer: optax.GradientTransformation, theta, opt_state, g, sigma):
    """One optimizer step along the ascent direction ``g`` (P,): (new θ, new optimizer
    state, TellInfo). Every strategy maximizes returns and optax minimizes a loss: this
    is the one sign flip."""
    updates, opt_state = optimizer.update(-g, opt_state, theta)
    return optax.apply_updates(theta, updates), opt_state, step_info(g, updates, theta, sigma)


def mirrored_ask(num_params: int, signs: jax.Array, sigma: Callable):
    """``ask(key, state, table, n)`` -> (offsets (n,), candidates (n, len(signs), P)):
    θ + sign σ ε for n noise vectors, σ = ``sigma(state)`` (a scalar or (P,))."""

    def ask(key, state, table: jax.Array, n: int):
        offsets = sample_offsets(key, n, table.shape[0], num_params)
        eps = get_noise_batch(table, offsets, num_params)
        candidates = perturb(state.theta, eps[:, None, :], signs[None, :, None], sigma(state))
        return offsets, candidates

    return ask


def optimizer_init(optimizer: optax.GradientTransformation) -> Callable[[jax.Array], ESState]:
    """``init(theta)`` -> ESState of θ (float32) and the optimizer's fresh state."""

    def init(theta: jax.Array) -> ESState:
        theta = jnp.asarray(theta, jnp.float32)
        return ESState(theta, optimizer.init(theta))

    return init


def float_returns(returns, mask):
    """(returns as float32, ``mask`` or all True): what every ``tell`` starts from."""
    returns = jnp.asarray(returns, jnp.float32)
    return returns, jnp.ones(returns.shape, bool) if mask is None else mask


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

    def sigma(state: ESState) -> float:
        return noise_stdev

    def tell(state: ESState, table, offsets, returns, sign_returns=None, mask=None):
        returns, mask = float_returns(returns, mask)
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
        theta, opt_state, info = ascend(optimizer, state.theta, state.opt_state, g, noise_stdev)
        return ESState(theta, opt_state), info

    return ES(optimizer_init(optimizer), mirrored_ask(num_params, signs, sigma), tell, sigma)
