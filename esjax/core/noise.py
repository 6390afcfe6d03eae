"""Shared Gaussian noise table: perturbations are slices of it, named by offset.

The table itself is a flat float32 array of standard normal values. Creating it is
the caller's business (see ``esjax.rollout.local.SharedNoiseTable``); the functions here only
read it, and take it as an argument so that jit never bakes it into a program.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor

import jax
import jax.numpy as jnp
import numpy as np

NOISE_CHUNK = 1 << 24  # values per independently seeded chunk of the table


def fill_noise_table(out: np.ndarray, seed: int, threads: int | None = None) -> np.ndarray:
    """Fill ``out`` (float32, shape (T,)) in place with N(0, 1) values from ``seed``.

    The table is cut into fixed chunks of NOISE_CHUNK values, each with its own stream
    spawned from ``seed``, so chunks fill in parallel (numpy releases the GIL) and the
    result is the same for any number of ``threads``, on every machine and process.
    """
    if out.dtype != np.float32 or out.ndim != 1:
        raise ValueError("noise table must be a 1-D float32 array")
    starts = range(0, len(out), NOISE_CHUNK)
    seqs = np.random.SeedSequence(seed).spawn(len(starts))

    def fill(i: int) -> None:
        chunk = out[starts[i] : starts[i] + NOISE_CHUNK]
        np.random.Generator(np.random.PCG64(seqs[i])).standard_normal(out=chunk, dtype=np.float32)

    workers = threads or os.cpu_count() or 1
    if workers == 1 or len(starts) == 1:
        for i in range(len(starts)):
            fill(i)
    else:
        with ThreadPoolExecutor(workers) as pool:
            list(pool.map(fill, range(len(starts))))
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


def perturb(theta, eps, sign, noise_stdev: float):
    """``θ + sign σ ε`` in float32: the parameters one episode runs (sign +1 / -1, or 0
    for θ itself). NumPy or JAX arrays, broadcasting: the workers call it with one row
    ε (P,), ``ES.ask`` with a batch. ``sign σ`` is rounded to float32 first, then
    multiplied and added, so NumPy callers get the same bits every time."""
    scale = np.float32(sign * noise_stdev) if np.ndim(sign) == 0 else sign * noise_stdev
    return theta + scale * eps
