"""The run state as one value, its checkpoint tree, and ``load_run``.

``RunState`` is everything the next generation depends on. ``state_to_tree`` /
``state_from_tree`` convert it to and from the arrays orbax stores (no pickle), and
``load_run`` reads a run directory's checkpoint back: ``train --resume``, ``evaluate``
and the tests all use it.
"""

from __future__ import annotations

import functools
import math
import types
from pathlib import Path
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from esjax.config import Config
from esjax.core.es import ES
from esjax.core.obstat import ObStat, obstat_init, obstat_mean_std
from esjax.core.optim import make_optimizer
from esjax.core.policy import PolicySpec, policy_init
from esjax.core.strategies import ES_OPTIONS, build_strategy, state_extras, state_of
from esjax.errors import ConfigError
from esjax.rollout.envs import EnvInfo, env_info
from esjax.run.rundir import load_run_config


class RunState(NamedTuple):
    """Everything the next generation depends on (one value; replaced, never mutated)."""

    es: Any  # its strategy's state (core.strategies): θ (P,) float32, the optimizer's, ...
    obstat: ObStat  # running observation statistics (float64)
    generation: int  # generations completed
    episodes: int  # training episodes the updates used
    timesteps: int  # their env steps: what --max-timesteps counts
    env_steps: int  # every env step simulated (used, evaluation and thrown-away episodes)
    periodic_eval_steps: int  # the part of env_steps that periodic evaluations (--eval-every) ran
    time_elapsed: float  # seconds of training
    best_eval: float  # best mean evaluation return so far (-inf: none yet)
    expected_length: float  # mean training-episode length, for dispatching
    gen_policy: tuple[np.ndarray, np.ndarray, np.ndarray]  # θ, ob mean, ob std last run

    @property
    def theta(self) -> jax.Array:
        return self.es.theta


def policy_spec(cfg: Config, info: EnvInfo) -> PolicySpec:
    """The policy network for ``cfg`` on an environment with ``info``'s spaces."""
    return PolicySpec(
        ob_dim=info.ob_dim,
        ac_dim=info.ac_dim,
        hidden_dims=cfg.hidden_dims,
        nonlin=cfg.nonlin,
        ac_low=info.ac_low,
        ac_high=info.ac_high,
        ac_bins=cfg.ac_bins if cfg.discretize_actions else 0,
        normalize_obs=cfg.observation_normalization,
    )


def build_es(cfg: Config, num_params: int) -> ES:
    """The strategy (``--algo``: init/ask/tell/sigma) with ``cfg``'s optimizer and options;
    the same object for the same options (its jitted ``tell`` compiles once per process:
    ``jitted_tell``)."""
    return _build_es(tuple(getattr(cfg, k) for k in ES_OPTIONS), num_params)


@functools.lru_cache(maxsize=32)
def jitted_tell(es: ES):
    """``jax.jit(es.tell)``, one per ES (so one compilation per options and shape class)."""
    return jax.jit(es.tell)


@functools.lru_cache(maxsize=32)
def _build_es(options: tuple, num_params: int) -> ES:
    o = types.SimpleNamespace(**dict(zip(ES_OPTIONS, options)))
    optimizer = make_optimizer(
        o.optimizer, o.learning_rate, gradient_optimizer=o.gradient_optimizer,
        momentum=o.momentum, weight_decay=o.weight_decay, l2coeff=o.l2coeff,
        max_speed=o.max_speed,
    )  # fmt: skip
    return build_strategy(o, num_params, optimizer)


def run_keys(seed: int) -> tuple[jax.Array, jax.Array]:
    """(key of the initial θ, key of the unit schedule) of a run's seed."""
    key_init, key_units = jax.random.split(jax.random.PRNGKey(seed))
    return key_init, key_units


def initial_state(cfg: Config, info: EnvInfo, es: ES | None = None) -> RunState:
    """Generation 0 on an env with ``info``'s spaces: θ from ``policy_init``, the
    statistics' prior, zero counters."""
    spec = policy_spec(cfg, info)
    es = es or build_es(cfg, spec.num_params)
    es_state = es.init(policy_init(run_keys(cfg.seed)[0], spec, cfg.output_init_std))
    obstat = obstat_init(spec.ob_dim)
    return RunState(
        es=es_state, obstat=obstat, generation=0, episodes=0, timesteps=0, env_steps=0,
        periodic_eval_steps=0, time_elapsed=0.0, best_eval=-math.inf,
        expected_length=float(info.max_episode_steps or 1000),
        gen_policy=(np.asarray(es_state.theta), *obstat_mean_std(obstat, cfg.obs_std_floor)),
    )  # fmt: skip


_TREE = ("theta", "opt_state", "obstat", "counters", "gen_policy")  # the rest: state_extras
_COUNTERS = {
    "generation": np.int64, "episodes": np.int64, "timesteps": np.int64,
    "env_steps": np.int64, "periodic_eval_steps": np.int64, "time_elapsed": np.float64,
    "best_eval": np.float64, "expected_length": np.float64,
}  # fmt: skip


def state_to_tree(s: RunState) -> dict:
    """The state as a tree of numpy arrays (what a checkpoint stores)."""
    theta, mean, std = s.gen_policy
    extra = {k: np.asarray(v) for k, v in state_extras(s.es).items()}  # PGPE: "sigma"
    return {
        "theta": np.asarray(s.es.theta),
        "opt_state": jax.tree.map(np.asarray, s.es.opt_state),
        **extra,
        "obstat": {
            "sum": np.asarray(s.obstat.sum, np.float64),
            "sumsq": np.asarray(s.obstat.sumsq, np.float64),
            "count": np.array(s.obstat.count, np.float64),
        },
        "counters": {k: np.array(getattr(s, k), t) for k, t in _COUNTERS.items()},
        "gen_policy": {"theta": np.asarray(theta), "ob_mean": mean, "ob_std": std},
    }


def state_from_tree(tree: dict, algo: str) -> RunState:
    """Inverse of ``state_to_tree`` for strategy ``algo`` (θ and the optimizer state as
    JAX arrays)."""
    o, c, p = tree["obstat"], tree["counters"], tree["gen_policy"]
    es = (jnp.asarray(tree["theta"]), jax.tree.map(jnp.asarray, tree["opt_state"]))
    return RunState(
        es=state_of(algo, *es, {k: jnp.asarray(v) for k, v in tree.items() if k not in _TREE}),
        obstat=ObStat(np.asarray(o["sum"]), np.asarray(o["sumsq"]), float(o["count"])),
        gen_policy=(np.asarray(p["theta"]), np.asarray(p["ob_mean"]), np.asarray(p["ob_std"])),
        **{k: (int if t is np.int64 else float)(c[k]) for k, t in _COUNTERS.items()},
    )


def check_meta(cfg: Config, num_params: int, meta: dict) -> None:
    """ConfigError unless a checkpoint's metadata describes ``cfg``'s env and policy."""
    saved = meta.get("config", {})
    mine = cfg.to_dict()
    for key in ("env", "algo", "hidden_dims", "discretize_actions", "ac_bins", "optimizer"):
        if saved.get(key, "openai-es" if key == "algo" else None) != mine[key]:
            raise ConfigError(
                f"the checkpoint was written with {key}={saved.get(key)!r} but config.json "
                f"says {mine[key]!r}: restore config.json or start a new run"
            )
    if meta.get("num_params") != num_params:
        raise ConfigError(
            f"the checkpoint holds {meta.get('num_params')} parameters, this policy "
            f"{num_params}: restore config.json or start a new run"
        )


class LoadedRun(NamedTuple):
    """A checkpoint read back: the run's config, policy, state, metadata and step."""

    cfg: Config
    spec: PolicySpec
    state: RunState
    meta: dict
    step: int

    def policy(self, which: str = "latest") -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(θ, ob mean, ob std): for 'best', the policy that generation's evaluation
        measured; otherwise the checkpoint's current θ with its statistics."""
        if which == "best":
            return self.state.gen_policy
        theta = np.asarray(self.state.theta)
        return (theta, *obstat_mean_std(self.state.obstat, self.cfg.obs_std_floor))


def restore_template(cfg: Config, spec: PolicySpec) -> dict:
    """The checkpoint tree's structure, shapes and dtypes for ``cfg`` and ``spec`` (what
    orbax restores into): zeros, with no initial policy drawn."""
    theta = np.zeros(spec.num_params, np.float32)
    ob = np.zeros(spec.ob_dim, np.float32)
    counters = dict.fromkeys(_COUNTERS, 0)
    es = build_es(cfg, spec.num_params).init(theta)
    state = RunState(es, obstat_init(spec.ob_dim), gen_policy=(theta, ob, ob), **counters)
    return state_to_tree(state)


def load_run(run_dir: Path, which: str | int = "latest", cfg: Config | None = None,
             info: EnvInfo | None = None) -> LoadedRun:  # fmt: skip
    """Checkpoint ``which`` ('latest', 'best' or a generation) of ``run_dir``, read-only.

    ``cfg`` defaults to the run's config.json, ``info`` to its env's (a caller that has
    it saves creating the env). ConfigError (one line) for a missing run, checkpoint or
    config, or a checkpoint that does not fit the config."""
    from esjax.run.checkpoint import CheckpointStore

    cfg = cfg or load_run_config(run_dir)
    info = info or env_info(cfg.env, cfg.env_kwargs)
    spec = policy_spec(cfg, info)
    store = CheckpointStore(run_dir, read_only=True)
    try:
        step = store.resolve(which)
        check_meta(cfg, spec.num_params, store.load_meta(step))
        template = restore_template(cfg, spec)
        tree, meta = store.load(step, template)
    finally:
        store.close()
    return LoadedRun(cfg, spec, state_from_tree(tree, cfg.algo), meta, step)


def checkpoint_meta(cfg: Config, spec: PolicySpec, s: RunState, eval_return: float,
                    best_step: int | None, best_eval: float) -> dict:  # fmt: skip
    """JSON side of a checkpoint: the config and what identifies this step."""
    return {
        "config": cfg.to_dict(),
        "generation": s.generation,
        "eval_return": None if math.isnan(eval_return) else eval_return,
        "best_step": best_step,
        "best_eval": None if best_step is None else best_eval,
        "num_params": spec.num_params,
        "ob_dim": spec.ob_dim,
        "ac_dim": spec.ac_dim,
    }
