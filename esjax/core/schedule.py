"""Which episodes a generation runs: a fixed, seeded sequence of work units.

Unit u of generation g is either a noiseless evaluation of θ or one noise vector
(two episodes, θ ± σε, with mirrored sampling). Everything about it (noise offset, env
seed, action-noise seed, which of its rollouts gather observation statistics) derives
from (seed, g, u) alone, so results do not depend on how many workers run them or in which
order they finish. A generation uses the shortest prefix of its sequence that meets the
episode and timestep minimums. Offsets come from ``esjax.core.noise.sample_offsets``, the
sampler ``ES.ask`` uses too: training and ``ask`` draw noise the same way.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from esjax.core.noise import sample_offsets

UNIT_BLOCK = 256  # units generated per call
EVAL_STREAM = 0x7FFFFFFF  # the block number of periodic evaluations (units use 0, 1, ...)


class Units(NamedTuple):
    """Metadata of UNIT_BLOCK consecutive units; fields have shape (UNIT_BLOCK,) but
    ``calc_obstat``, which is drawn per rollout as in the OpenAI starter."""

    offset: jax.Array  # int32, noise-table offset
    is_eval: jax.Array  # bool, noiseless evaluation episode
    calc_obstat: jax.Array  # bool (UNIT_BLOCK, 2): rollout 0 / 1 adds to the statistics
    env_seed: jax.Array  # uint32, seed of env.reset (shared by both mirrored episodes)
    noise_seed: jax.Array  # uint32, seed of the action-noise stream


def sample_units(
    key: jax.Array,
    generation: int,
    block: int,
    table_size: int,
    dim: int,
    eval_prob: float,
    calc_obstat_prob: float,
) -> Units:
    """Units ``block * UNIT_BLOCK ...`` of ``generation``, derived from ``key`` only."""
    k = jax.random.fold_in(jax.random.fold_in(key, generation), block)
    k_off, k_eval, k_obs, k_env, k_noise = jax.random.split(k, 5)
    n = UNIT_BLOCK
    return Units(
        offset=sample_offsets(k_off, n, table_size, dim),
        is_eval=jax.random.uniform(k_eval, (n,)) < eval_prob,
        calc_obstat=jax.random.uniform(k_obs, (n, 2)) < calc_obstat_prob,
        env_seed=jax.random.bits(k_env, (n,), jnp.uint32),
        noise_seed=jax.random.bits(k_noise, (n,), jnp.uint32),
    )


def eval_env_seeds(key: jax.Array, generation: int, n: int) -> jax.Array:
    """Reset seeds, uint32 (n,), of ``generation``'s periodic evaluation episodes: a
    stream of their own, so evaluating changes none of the training units."""
    k = jax.random.fold_in(jax.random.fold_in(key, generation), EVAL_STREAM)
    return jax.random.bits(k, (n,), jnp.uint32)
