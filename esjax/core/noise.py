"""Shared Gaussian noise table: perturbations are slices of it, named by offset.

The table itself is a flat float32 array of standard normal values. Creating it is
the caller's business (see ``esjax.pool.SharedNoiseTable``); the functions here only
read it, and take it as an argument so that jit never bakes it into a program.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np


def fill_noise_table(out: np.ndarray, seed: int) -> np.ndarray:
    """Fill ``out`` (float32, shape (T,)) in place with N(0, 1) values from ``seed``.

    Deterministic for a given (seed, T): the same table on every machine and process.
    """
    if out.dtype != np.float32 or out.ndim != 1:
        raise ValueError("noise table must be a 1-D float32 array")
    np.random.Generator(np.random.PCG64(seed)).standard_normal(out=out, dtype=np.float32)
    return out


def get_noise(table: jax.Array, offset: jax.Array, dim: int) -> jax.Array:
    """The perturbation ``table[offset:offset + dim]``, shape (dim,) float32."""
    return jax.lax.dynamic_slice(table, (offset,), (dim,))


def get_noise_batch(table: jax.Array, offsets: jax.Array, dim: int) -> jax.Array:
    """Rows ``table[o:o + dim]`` for each offset o in ``offsets`` (N,), shape (N, dim)."""
    return jax.vmap(lambda o: get_noise(table, o, dim))(offsets)


def sample_offsets(key: jax.Array, n: int, table_size: int, dim: int) -> jax.Array:
    """``n`` uniform offsets in [0, table_size - dim], int32, shape (n,)."""
    return jax.random.randint(key, (n,), 0, table_size - dim + 1, dtype=jnp.int32)
