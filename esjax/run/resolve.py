"""From options to a run: the derived values of a Config and the pool that runs it.

``resolve_config`` fills what depends on the env and the machine (``--envs-per-worker
auto``) and refuses what cannot run here (a noise table smaller than the policy, or
larger than the memory); what it returns is what ``config.json`` records, and the
trainer never changes it. ``make_pool`` builds the ``--backend``'s worker pool for it.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable

from esjax.config import Config
from esjax.core.policy import PolicySpec
from esjax.errors import ConfigError
from esjax.rollout.envs import EnvInfo, env_info, step_seconds
from esjax.rollout.jax_envs import is_jax_env
from esjax.rollout.transport import WorkerPool
from esjax.rollout.worker import WorkerConfig
from esjax.run.state import policy_spec

# Per worker: the slots' perturbed weights (4 bytes a parameter each, read every step)
# stay within about an L2 cache; beyond that every step streams them from memory and
# evicts the simulator's data (measured: a 256x256 policy ran slower at 8 envs than at 2).
WEIGHT_BUDGET_BYTES = 768 * 1024
MAX_ENVS_PER_WORKER = 32
POLICY_CALL_S = 15e-6  # the fixed cost of one NumPy policy call for all slots (measured)
MIN_AUTO_ENVS = 4  # slots enough to even out a generation's last wave
# JAX-native envs: members per jitted call. Fixed, not sized to the machine: a member's
# result may change in its last bits with the chunk size (esjax.rollout.jax_rollout).
JAX_CHUNK = 32


def auto_envs_per_worker(num_params: int, population_size: int, timesteps_per_gen: int,
                         max_episode_steps: int | None, workers: int, eval_episodes: int = 0,
                         eval_prob: float = 0.0, step_seconds: float = 0.0) -> int:  # fmt: skip
    """Envs per worker for ``--envs-per-worker auto``: enough slots for one wave of a
    generation's episodes, its periodic evaluations (``eval_episodes``) and --eval-prob
    units included (a generation's last episodes then start with the first, not after
    them: a second wave of one episode left a worker idle for a whole episode); no more
    than the policy call needs (``step_seconds``: one env step; inference is shared by
    the slots, so K slots bring its fixed cost per step to 1 % of a step, and more only
    evict each other's simulator state from the caches: AntBulletEnv-v0 stepped 20 %
    slower with 8 or 24 envs per process than with 1); at most as many as keep the
    slots' weights cache-sized, and at most 32."""
    training = max(population_size, -(-timesteps_per_gen // (max_episode_steps or 1000)))
    episodes = math.ceil(training * (1.0 + eval_prob)) + eval_episodes
    wave = -(-episodes // workers)
    cache = WEIGHT_BUDGET_BYTES // (4 * num_params)
    amortized = MAX_ENVS_PER_WORKER
    if step_seconds > 0:
        amortized = max(MIN_AUTO_ENVS, math.ceil(POLICY_CALL_S / (0.01 * step_seconds)))
    return max(1, min(wave, cache, amortized, MAX_ENVS_PER_WORKER))


def available_memory() -> int | None:
    """Bytes of memory available for new allocations here (None: unknown)."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def check_noise_table(cfg: Config, num_params: int, memory: int | None) -> None:
    """ConfigError unless the table holds a policy's worth of noise and fits in
    ``memory`` bytes (with the Ray backend each node checks its own object store)."""
    size = cfg.noise_table_size
    if size < num_params:
        raise ConfigError(
            f"--noise-table-size {size:,} is smaller than the policy's {num_params:,} "
            "parameters: enlarge the table or shrink --hidden-dims"
        )
    if cfg.backend != "ray" and memory is not None and 4 * size > memory:
        raise ConfigError(
            f"--noise-table-size {size:,} needs {4 * size / 2**30:.1f} GiB of memory and "
            f"this machine has {memory / 2**30:.1f} GiB available: lower it (the default "
            "250,000,000 is 0.9 GiB)"
        )


def resolve_config(cfg: Config, info: EnvInfo | None = None,
                   memory: int | None = None) -> tuple[Config, PolicySpec]:  # fmt: skip
    """(``cfg`` with every derived value filled in, the policy it trains). ``info``
    defaults to the env's (made once here), ``memory`` to ``available_memory()``;
    ConfigError (one line) for what cannot run."""
    info = info or env_info(cfg.env, cfg.env_kwargs)
    if cfg.train_reward or cfg.train_end_on_fall:
        from esjax.rollout.train_reward import (
            check_end_on_fall,
            check_train_reward,
            parse_train_reward,
        )

        if not info.reward_terms:
            info = env_info(cfg.env, cfg.env_kwargs)
        check_train_reward(parse_train_reward(cfg.train_reward), cfg.env, info.reward_terms)
        if cfg.train_end_on_fall:
            check_end_on_fall(cfg.env, info.reward_terms)
    spec = policy_spec(cfg, info)
    check_noise_table(cfg, spec.num_params, available_memory() if memory is None else memory)
    if is_jax_env(cfg.env):
        if cfg.backend == "ray":
            raise ConfigError(f"--backend ray: {cfg.env} is a JAX-native env and runs in the "
                              "trainer's process: drop --backend ray")  # fmt: skip
        if not cfg.envs_per_worker:
            cfg = dataclasses.replace(cfg, envs_per_worker=JAX_CHUNK)
    elif not cfg.envs_per_worker:
        k = auto_envs_per_worker(
            spec.num_params,
            cfg.population_size,
            cfg.timesteps_per_gen,
            info.max_episode_steps,
            cfg.workers,
            eval_episodes=cfg.eval_episodes if cfg.eval_every else 0,
            eval_prob=cfg.eval_prob,
            step_seconds=step_seconds(cfg.env, kwargs=cfg.env_kwargs),
        )
        cfg = dataclasses.replace(cfg, envs_per_worker=k)
    check_memory(cfg, spec, available_memory() if memory is None else memory)
    return cfg, spec


# Bytes per episode of a generation, held until its update: the result record, its
# observation statistics (float64 sums), the unit sampler's and tell's rows (a bound,
# measured loosely: a Python record of a finished episode is about 1 KB).
EPISODE_BYTES = 2048
THETA_COPIES = 12  # θ-sized float32 arrays in the trainer: θ, the optimizer's moments, σ,
# the gradient, the step, the policy sent to the workers, a checkpoint being written


def memory_needs(cfg: Config, spec: PolicySpec) -> dict[str, int]:
    """Bytes the run's flag-sized parts need here, by the flag that sizes them."""
    p = spec.num_params
    episodes = math.ceil(max(cfg.population_size, 1) * (1 + cfg.eval_prob)) + cfg.eval_episodes
    workers = 0 if cfg.backend == "ray" else cfg.workers  # Ray's actors live on their nodes
    return {
        "--population-size": episodes * (EPISODE_BYTES + 16 * spec.ob_dim),
        "--hidden-dims": THETA_COPIES * 4 * p,
        "--envs-per-worker": workers * (max(cfg.envs_per_worker, 1) + 2) * 4 * p,
        "--noise-table-size": 0 if cfg.backend == "ray" else 4 * cfg.noise_table_size,
    }


def check_memory(cfg: Config, spec: PolicySpec, memory: int | None) -> None:
    """ConfigError (one line, before anything starts) unless the flag-sized parts of the
    run fit in ``memory`` bytes: names the largest part and its flag."""
    if memory is None:
        return
    needs = memory_needs(cfg, spec)
    total = sum(needs.values())
    if total <= memory:
        return
    flag, most = max(needs.items(), key=lambda kv: kv[1])
    raise ConfigError(
        f"this run needs about {total / 2**30:.1f} GiB of memory ({flag} alone "
        f"{most / 2**30:.1f} GiB) and this machine has {memory / 2**30:.1f} GiB available: "
        f"lower {flag}"
    )


def worker_config(cfg: Config, spec: PolicySpec) -> WorkerConfig:
    """What each worker of ``cfg``'s run starts with."""
    from esjax.rollout.train_reward import parse_train_reward

    return WorkerConfig(env_id=cfg.env, spec=spec, noise_size=cfg.noise_table_size,
                        noise_stdev=cfg.noise_stdev, ac_noise_std=cfg.ac_noise_std,
                        envs_per_worker=cfg.envs_per_worker,
                        train_reward=parse_train_reward(cfg.train_reward),
                        env_kwargs=cfg.env_kwargs)  # fmt: skip


def make_pool(cfg: Config, spec: PolicySpec, log: Callable[[str], None] = print) -> WorkerPool:
    """The ``--backend``'s pool for a resolved ``cfg`` (not started)."""
    if not cfg.envs_per_worker:
        raise ValueError("make_pool needs a resolved Config: see resolve_config")
    wcfg = worker_config(cfg, spec)
    if is_jax_env(cfg.env):
        from esjax.rollout.jax_pool import JaxPool

        return JaxPool(wcfg, seed=cfg.seed, lanes=cfg.num_workers, log=log)
    if cfg.backend == "ray":
        from esjax.rollout.ray_pool import RayPool

        return RayPool(wcfg, seed=cfg.seed, num_workers=cfg.num_workers,
                       address=cfg.ray_address or None, log=log)  # fmt: skip
    if cfg.backend == "inline":
        from esjax.rollout.inline import InlinePool

        return InlinePool(wcfg, num_workers=cfg.workers, seed=cfg.seed, log=log)
    from esjax.rollout.local import LocalPool

    return LocalPool(wcfg, num_workers=cfg.workers, seed=cfg.seed, log=log)
