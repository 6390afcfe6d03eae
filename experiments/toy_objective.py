"""ES on a toy objective, end to end under ``jax.jit``: esjax's core as a library.

    python -m experiments.toy_objective                 # Rastrigin in 100-D
    python -m experiments.toy_objective --quick --out /tmp/toy.png

The whole run, every generation's ask -> evaluate -> tell, is one ``jax.lax.scan`` inside
one ``jax.jit``: no Python between generations. It compares centered-rank fitness shaping
with raw returns, and mirrored sampling with as many independent samples, on the same
seeds and noise table, and plots the objective per generation. (The ``sign`` modes rank
per-step reward signs, which a one-shot objective does not have.)
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax

from esjax.core import fill_noise_table, make_es


def rastrigin(x: jax.Array) -> jax.Array:
    """Rastrigin function of (..., D) points (minimum 0 at the origin)."""
    return 10.0 * x.shape[-1] + jnp.sum(x**2 - 10.0 * jnp.cos(2 * jnp.pi * x), axis=-1)


VARIANTS = {  # name: (fitness shaping, mirrored sampling)
    "centered ranks, mirrored": (True, True),
    "raw returns, mirrored": (False, True),
    "centered ranks, independent samples": (True, False),
}


def run_es(table: jax.Array, dim: int, generations: int, pairs: int, seed: int,
           shaping: bool, mirrored: bool, sigma: float = 0.1,
           lr: float = 0.05) -> np.ndarray:  # fmt: skip
    """Objective value of θ after each generation, (generations,): ES with 2 x ``pairs``
    evaluations per generation (``pairs`` mirrored pairs, or as many independent
    samples), centered-rank shaping or raw returns, Adam."""
    es = make_es(dim, optax.adam(lr), noise_stdev=sigma, fitness_shaping=shaping,
                 mirrored_sampling=mirrored)  # fmt: skip
    n = pairs if mirrored else 2 * pairs
    key_init, key_run = jax.random.split(jax.random.PRNGKey(seed))
    state = es.init(jax.random.uniform(key_init, (dim,), minval=-3.0, maxval=3.0))

    def generation(state, key):
        offsets, candidates = es.ask(key, state, table, n)  # (n,), (n, 2 or 1, D)
        state, _ = es.tell(state, table, offsets, -rastrigin(candidates))  # ES maximizes
        return state, rastrigin(state.theta)

    @jax.jit
    def run(state, keys):
        return jax.lax.scan(generation, state, keys)[1]

    return np.asarray(run(state, jax.random.split(key_run, generations)))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m experiments.toy_objective",
                                description=__doc__.split("\n\n")[0])  # fmt: skip
    p.add_argument("--dim", type=int, default=100)
    p.add_argument("--generations", type=int, default=1000)
    p.add_argument("--pairs", type=int, default=50, help="mirrored pairs per generation")
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--out", type=Path, default=Path("experiments/results/toy_objective.png"))
    p.add_argument("--quick", action="store_true", help="a few generations (a smoke test)")
    args = p.parse_args(argv)
    if args.quick:
        args.dim, args.generations, args.pairs, args.seeds = 10, 20, 8, 1
    table = jnp.asarray(fill_noise_table(np.empty(1_000_000, np.float32), seed=0))
    curves = {}
    for name, (shaping, mirrored) in VARIANTS.items():
        t0 = time.perf_counter()
        runs = np.stack([run_es(table, args.dim, args.generations, args.pairs, s, shaping,
                                mirrored) for s in range(args.seeds)])  # fmt: skip
        curves[name] = runs
        print(f"{name:>36}: final objective {np.median(runs[:, -1]):9.2f} "
              f"(median of {args.seeds} seeds; start {np.median(runs[:, 0]):.1f}) "
              f"in {time.perf_counter() - t0:.1f} s", flush=True)  # fmt: skip
    plot(curves, args)
    print(f"wrote {args.out}")
    return 0


def plot(curves: dict[str, np.ndarray], args) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=90)
    gens = np.arange(1, args.generations + 1)
    for i, (name, runs) in enumerate(curves.items()):
        med = np.median(runs, axis=0)
        ax.plot(gens, med, color=f"C{i}", label=name)
        ax.fill_between(gens, runs.min(0), runs.max(0), color=f"C{i}", alpha=0.15)
    ax.set_yscale("log")
    ax.set_xlabel("generation")
    ax.set_ylabel(f"Rastrigin-{args.dim} of θ (median, min-max of {args.seeds} seeds)")
    ax.set_title(f"ES, {2 * args.pairs} evaluations per generation, Adam")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out)
    plt.close(fig)


if __name__ == "__main__":
    sys.exit(main())
