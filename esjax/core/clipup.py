"""ClipUp (Toklu, Liskowski, Srivastava 2020, arXiv 2008.02387) as an optax transform.

Each step normalizes the gradient, adds it to a momentum velocity, and caps the
velocity's norm at a maximum speed:

    v <- momentum * v - learning_rate * u / |u|      (u: the loss gradient optax gets)
    v <- v * min(1, max_speed / |v|)
    θ <- θ + v

The paper writes it for ascent (v <- m v + α g/|g|, θ <- θ + v with g = -u); this is
the same rule on the loss gradient optax works with. A zero gradient adds nothing.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax

from esjax.core.reduce import ordered_norm


class ClipUpState(NamedTuple):
    """The velocity: the last update applied, shape of the parameters (P,) float32."""

    velocity: jax.Array


def _safe_unit(x: jax.Array) -> jax.Array:
    """``x / |x|``, or zeros where |x| is 0."""
    norm = ordered_norm(x)
    return jnp.where(norm > 0, x / jnp.where(norm > 0, norm, 1.0), 0.0)


def clipup(
    learning_rate: float, max_speed: float, momentum: float = 0.9
) -> optax.GradientTransformation:
    """ClipUp for a flat parameter vector: ``learning_rate`` is the step added per
    generation (the paper's α, 0.5-0.75 x ``max_speed``), ``max_speed`` the cap on the
    velocity's norm, ``momentum`` the velocity's decay (the paper's 0.9)."""

    def init(params: jax.Array) -> ClipUpState:
        return ClipUpState(jnp.zeros_like(params, jnp.float32))

    def update(updates, state: ClipUpState, params=None):
        del params
        velocity = momentum * state.velocity - learning_rate * _safe_unit(updates)
        speed = ordered_norm(velocity)
        scale = jnp.where(speed > max_speed, max_speed / jnp.where(speed > 0, speed, 1.0), 1.0)
        velocity = (velocity * scale).astype(jnp.float32)
        return velocity, ClipUpState(velocity)

    return optax.GradientTransformation(init, update)
