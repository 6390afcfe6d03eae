"""ES gradient estimate: a weighted sum of noise-table rows gathered by offset."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from esjax.core.noise import get_noise_batch

GATHER_CHUNK = 32  # rows gathered per scan step: bounds memory at CHUNK x dim floats


def weighted_noise_sum(
    table: jax.Array, offsets: jax.Array, weights: jax.Array, dim: int
) -> jax.Array:
    """``sum_i weights[i] * table[offsets[i]:offsets[i] + dim]``, shape (dim,) float32.

    ``offsets`` (N,) int, ``weights`` (N,) float. Scans over chunks of rows so the
    (N, dim) noise matrix is never materialized.
    """
    n = offsets.shape[0]
    pad = (-n) % GATHER_CHUNK
    offsets = jnp.pad(offsets, (0, pad)).reshape(-1, GATHER_CHUNK)
    weights = jnp.pad(weights.astype(jnp.float32), (0, pad)).reshape(-1, GATHER_CHUNK)

    def step(acc, chunk):
        offs, w = chunk
        return acc + w @ get_noise_batch(table, offs, dim), None

    total, _ = jax.lax.scan(step, jnp.zeros((dim,), jnp.float32), (offsets, weights))
    return total


def es_gradient(
    table: jax.Array,
    offsets: jax.Array,
    weights: jax.Array,
    num_episodes: jax.Array,
    dim: int,
    noise_stdev: float,
    divide_by_stdev: bool,
) -> jax.Array:
    """Ascent direction ``sum_i w_i eps_i / n`` (``/ sigma`` too if ``divide_by_stdev``).

    ``n`` is the number of episodes behind the weights (2 per noise vector with mirrored
    sampling), as in the OpenAI reference. Shape (dim,) float32.
    """
    g = weighted_noise_sum(table, offsets, weights, dim) / num_episodes
    if divide_by_stdev:
        g = g / noise_stdev
    return g
