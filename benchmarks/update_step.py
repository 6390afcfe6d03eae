"""Update-step time: esjax's jitted gather + weighted sum + optax step vs the NumPy method of
the notebook esjax replaces (stack noise rows, ``np.dot`` in batches of 500), with the
machine's plain array-copy bandwidth as the reference."""

from __future__ import annotations

import time

import numpy as np


def _best_of(fn, repeats: int) -> float:
    fn()  # warm-up (compilation)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def numpy_update(table, offsets, weights, theta, m, v, t, dim, lr=0.01):
    """The notebook's path: batched_weighted_sum over stacked rows, then its Adam."""
    total = np.zeros(dim, np.float32)
    for i in range(0, len(offsets), 500):
        rows = np.asarray([table[o : o + dim] for o in offsets[i : i + 500]], np.float32)
        total += np.dot(np.asarray(weights[i : i + 500], np.float32), rows)
    g = total / len(offsets)
    grad = -g + 0.005 * theta
    a = lr * np.sqrt(1 - 0.999**t) / (1 - 0.9**t)
    m[:] = 0.9 * m + 0.1 * grad
    v[:] = 0.999 * v + 0.001 * grad * grad
    return theta - a * m / (np.sqrt(v) + 1e-8)


def copy_bandwidth_gbs(nbytes: int = 400_000_000) -> float:
    """GB/s of ``np.copyto`` on a large float32 array (read + write counted)."""
    src = np.ones(nbytes // 4, np.float32)
    dst = np.empty_like(src)
    t = _best_of(lambda: np.copyto(dst, src), 3)
    return 2 * nbytes / t / 1e9


def bench_update(table: np.ndarray, population: int, dim: int, repeats: int = 3) -> dict:
    import jax
    import jax.numpy as jnp

    from esjax.core.es import make_es
    from esjax.core.optim import make_optimizer

    rng = np.random.default_rng(0)
    n = population // 2  # mirrored: population episodes = n noise vectors
    offsets = rng.integers(0, len(table) - dim + 1, size=n).astype(np.int32)
    returns = rng.normal(size=(n, 2)).astype(np.float32)
    es = make_es(dim, make_optimizer("adam", 0.01))
    tell = jax.jit(es.tell)
    jtable = jax.dlpack.from_dlpack(table)
    state = es.init(jnp.zeros(dim))

    def run_esjax():
        s, _ = tell(state, jtable, offsets, returns)
        s.theta.block_until_ready()

    weights = returns[:, 0] - returns[:, 1]
    theta = np.zeros(dim, np.float32)
    m, v = np.zeros(dim, np.float32), np.zeros(dim, np.float32)
    t_esjax = _best_of(run_esjax, repeats)
    t_numpy = _best_of(lambda: numpy_update(table, offsets, weights, theta, m, v, 1, dim), repeats)
    bytes_read = n * dim * 4  # every noise row read once: the floor of any method
    return {
        "population": population,
        "params": dim,
        "esjax_ms": 1e3 * t_esjax,
        "numpy_ms": 1e3 * t_numpy,
        "speedup": t_numpy / t_esjax,
        "esjax_noise_read_gbs": bytes_read / t_esjax / 1e9,
    }
