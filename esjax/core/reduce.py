"""Reductions whose summation order is fixed by the code, not by the CPU.

XLA's own reductions (``jnp.sum``, ``jnp.linalg.norm``) are vectorized for the CPU they
compile on: their addition order, so their last bits, change from one CPU model to
another. Here a vector is summed as a balanced tree of elementwise additions (halves
added together until one element is left), whose order is the same on every machine.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def ordered_sum(x: jax.Array) -> jax.Array:
    """Sum of all elements of ``x`` (any shape) as a scalar of its dtype, added as a
    balanced binary tree over the flattened array zero-padded to a power of two."""
    flat = jnp.ravel(x)
    n = flat.shape[0]
    if n == 0:
        return jnp.zeros((), flat.dtype)
    size = 1 << (n - 1).bit_length()
    flat = jnp.pad(flat, (0, size - n))
    while size > 1:
        size //= 2
        flat = flat[:size] + flat[size:]
    return flat[0]


def ordered_norm(x: jax.Array) -> jax.Array:
    """Euclidean norm of ``x`` (any shape), scalar: ``sqrt(ordered_sum(x * x))``.

    The square root is kept from the code that divides by it: XLA rewrites ``y / sqrt(s)``
    to ``y * rsqrt(s)``, and its CPU code approximates rsqrt with an instruction whose last
    bits differ between Intel and AMD; a correctly rounded sqrt and division do not."""
    return jax.lax.optimization_barrier(jnp.sqrt(ordered_sum(x * x)))


def ordered_mean(x: jax.Array) -> jax.Array:
    """Mean of all elements of ``x``, scalar: ``ordered_sum(x) / x.size``."""
    return ordered_sum(x) / max(x.size, 1)
