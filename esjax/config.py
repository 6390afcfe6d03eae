"""The one source of truth for a run's options: a frozen dataclass, validated on creation.

Every field becomes a CLI flag in ``esjax.train`` (kebab-case; booleans as --x/--no-x),
with the field's ``help`` as its help text.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
from dataclasses import dataclass, field
from typing import Any

from esjax.core.obstat import STD_FLOOR
from esjax.core.policy import OUTPUT_INIT_STD
from esjax.core.strategies import (
    ALGOS,
    CLIPUP_MAX_SPEED,
    CLIPUP_STEP,
    PGPE_RADIUS,
    algo_help,
    default_help,
    strategy_problems,
    strategy_values,
)
from esjax.errors import ConfigError
from esjax.option_checks import (
    BACKENDS,
    NONLINEARITIES,
    OPTIMIZERS,
    RETURN_PROC_MODES,
    TRACKERS,
    option_problems,
)
from esjax.option_values import (
    env_kwargs_items,
    hidden_dims_tuple,
    type_problem,
)


def _opt(default, help: str, **meta):
    return field(default=default, metadata={"help": help, **meta})


@dataclass(frozen=True)
class Config:
    """Options of a training run (semantics of the OpenAI ES reference).

    Options whose default is None take their strategy's value (``esjax.core.strategies``) when
    the config is made, so config.json records what ran; options of another strategy
    stay None."""

    env: str = _opt(
        "AntBulletEnv-v0",
        "Gymnasium environment id (Box observations and actions); module:Id (Gymnasium's "
        "form) imports module first, which registers your own env.",
    )
    env_kwargs: tuple[str, ...] = _opt(
        (),
        "A keyword for gymnasium.make(env, **kwargs), repeatable: KEY=VALUE with VALUE a "
        "TOML literal (e.g. ctrl_cost_weight=0.05, terminate_when_unhealthy=false, "
        "mode='fast'); a preset may give a table [env_kwargs]. Every worker, evaluate and "
        "resume use them.",
    )
    preset: str = _opt(
        "none",
        "The preset the run started from (a name in esjax/presets, or a .toml path), "
        "or none: a record in config.json; esjax.train sets it (its --preset flag).",
    )
    algo: str = _opt("openai-es", algo_help(), choices=ALGOS)
    seed: int = _opt(0, "Seed of the noise table, the initial policy and every random stream.")
    run_dir: str = _opt("runs", "Parent folder; each run writes its own timestamped subfolder.")
    max_timesteps: int = _opt(
        10_000_000,
        "Stop once the training episodes the updates used reach this many timesteps "
        "(TimestepsSoFar; evaluation and thrown-away episodes are in EnvStepsSoFar); "
        "whichever limit comes first.",
    )
    max_generations: int = _opt(0, "Stop after this many generations; 0 means no limit.")
    target_return: float = _opt(
        float("inf"),
        "Stop once an evaluation of theta reaches this mean return (EvalBestSoFar: the "
        "periodic evaluations, or --eval-prob episodes when --eval-every is 0); inf = never.",
    )
    population_size: int = _opt(
        40, "Minimum episodes per generation (mirrored sampling: two per noise vector)."
    )
    timesteps_per_gen: int = _opt(10_000, "Minimum training timesteps per generation.")
    num_workers: int = _opt(
        0,
        "Workers; 0 means one per CPU core (--backend ray with --ray-address: one per CPU "
        "of every alive node).",
    )
    backend: str = _opt(
        "local",
        "Where the workers run: local (processes on this machine), ray (actors on a Ray "
        "cluster; needs esjax[ray]) or inline (in the trainer's process, on one core: for "
        "debuggers and profilers). Results are the same bit for bit.",
        choices=BACKENDS,
    )
    ray_address: str = _opt(
        "",
        "With --backend ray: the cluster to join (auto, or the head's HOST:PORT); empty "
        "starts a private Ray instance on this machine.",
    )
    envs_per_worker: int = _opt(
        0,
        "Environments each worker steps in lockstep (one policy call for all); 'auto' "
        "picks one wave of a generation's episodes (evaluations included) per worker, no "
        "more than share the policy call well for the env's step time, and few enough that "
        "the slots' perturbed weights stay cache-sized (esjax.run.resolve.auto_envs_per_worker). "
        "Results do not depend on it.",
    )
    learning_rate: float | None = _opt(
        None,
        "Step size of the optimizer (or of plain gradient ascent; ars: alpha). "
        + default_help("learning_rate", f"with --optimizer clipup {CLIPUP_STEP} x --max-speed"),
    )
    noise_stdev: float | None = _opt(
        None,
        "Standard deviation sigma of the parameter perturbations (ars: nu; pgpe learns its "
        "own from --init-radius). " + default_help("noise_stdev"),
    )
    l2coeff: float | None = _opt(
        None,
        "L2 weight-decay coefficient (pull of theta toward zero). " + default_help("l2coeff"),
    )
    logger: tuple[str, ...] = _opt(
        (),
        "Experiment trackers beside log.csv: tensorboard (RUN_DIR/tensorboard), wandb "
        "(offline unless W&B has a key); several at once; none for none. Needs "
        "esjax[tracking].",
    )
    snapshot_freq: int = _opt(
        10,
        "Checkpoint the full state every N generations (also at the end and after each new "
        "best evaluation); 0 = only those.",
    )
    keep_checkpoints: int = _opt(5, "Keep the newest N checkpoints (plus the best by evaluation).")
    eval_prob: float = _opt(
        0.0,
        "Chance that the next unit is a single noiseless episode of theta (the OpenAI "
        "reference's evaluations; its configs used 0.01-0.05). Counted in EnvStepsSoFar.",
    )
    eval_every: int = _opt(
        10,
        "Every N generations (0 = never), evaluate theta by --eval-episodes noiseless "
        "episodes run by the workers beside the generation's training episodes: the "
        "PeriodicEval* log columns, and what the best checkpoint is judged on. Not "
        "training timesteps; counted in EnvStepsSoFar and PeriodicEvalStepsSoFar.",
    )
    eval_episodes: int = _opt(5, "Episodes per periodic evaluation (--eval-every).")
    calc_obstat_prob: float = _opt(
        0.1,
        "Chance that a training rollout adds to the observation statistics, drawn for each "
        "rollout (each of a mirrored pair alone), as the OpenAI starter; evaluations never do.",
    )
    return_proc_mode: str | None = _opt(
        None,
        "Fitness shaping of returns. " + default_help("return_proc_mode"),
        choices=RETURN_PROC_MODES,
    )
    reward_shift: float = _opt(
        0.0,
        "Subtract this per step from training returns before fitness shaping (ARS's "
        "'shift', EvoTorch's decrease_rewards_by: removes a survival bonus that makes "
        "standing still a local optimum). Logged returns and evaluations are unshifted.",
    )
    train_reward: str = _opt(
        "",
        "Score training episodes by TERM=WEIGHT,... of the env's own reward terms instead "
        "of its stock reward (pybullet locomotors: alive, progress, electricity, "
        "joints_at_limit, feet_collision; MuJoCo v5: forward, ctrl, survive, contact; any "
        "env: constant, action_sq), e.g. progress=1,joints_at_limit=1,constant=0.01. "
        "Evaluations, the best checkpoint and --target-return use the stock reward; "
        "empty: the stock reward.",
    )
    train_end_on_fall: bool = _opt(
        False,
        "End each training episode at the first step whose alive term is negative "
        "(pybullet locomotors: HalfCheetah, which never ends an episode, flipped or on a "
        "thigh; the others end there already). Evaluations run the stock episodes.",
    )
    train_reward_until: int = _opt(
        0,
        "With --train-reward or --train-end-on-fall: use them only while the run has fewer "
        "training timesteps than this, then the stock reward and episodes (a gait found on "
        "the shaped reward, then refined on the env's own); 0: always.",
    )
    obs_std_floor: float = _opt(
        STD_FLOOR,
        "Observations are normalized by their running std, but never divided by less than "
        f"this ({STD_FLOOR:g}, the reference's: a dimension that barely varies is scaled "
        "up at most 1/floor times).",
    )
    mirrored_sampling: bool = _opt(
        True, "Evaluate theta + sigma*eps and theta - sigma*eps (ars and pgpe always do)."
    )
    fitness_shaping: bool | None = _opt(
        None, "Shape returns with --return-proc-mode, else raw. " + default_help("fitness_shaping")
    )
    weight_decay: bool = _opt(True, "Apply L2 weight decay with --l2coeff.")
    discretize_actions: bool = _opt(False, "Pick each action from --ac-bins uniform bins.")
    gradient_optimizer: bool = _opt(True, "Use --optimizer; off means plain gradient ascent.")
    observation_normalization: bool = _opt(True, "Normalize observations by running stats.")
    divide_by_stdev: bool | None = _opt(
        None, "Divide the gradient estimate by --noise-stdev. " + default_help("divide_by_stdev")
    )
    hidden_dims: tuple[int, ...] = _opt(
        (64, 64),
        "Hidden layer sizes of the MLP policy (64 64: the ES paper's MuJoCo network; its "
        "256 256 Humanoid network suits populations of thousands of episodes), or 'linear' "
        "for a linear policy (no hidden layer, starting from zero, as ARS).",
    )
    nonlin: str = _opt("tanh", "Hidden-layer nonlinearity.", choices=NONLINEARITIES)
    output_init_std: float = _opt(
        OUTPUT_INIT_STD,
        "Column norm of the output layer's initial weights (the hidden layers' is 1): "
        f"{OUTPUT_INIT_STD:g}, the reference's, starts with actions near zero; 1 starts "
        "with actions as large as the hidden units. Not with --hidden-dims linear (a "
        "linear policy starts at zero).",
    )
    ac_noise_std: float = _opt(0.01, "Gaussian action noise in training episodes (not eval).")
    ac_bins: int = _opt(5, "Bins per action dimension when --discretize-actions is on.")
    optimizer: str | None = _opt(
        None,
        "Gradient optimizer (optax; clipup: Toklu et al. 2020). " + default_help("optimizer"),
        choices=OPTIMIZERS,
    )
    momentum: float | None = _opt(
        None, "Momentum of the sgd and clipup optimizers. " + default_help("momentum")
    )
    max_speed: float | None = _opt(
        None,
        "ClipUp's cap on the velocity's norm (--optimizer clipup). Default: 2 x "
        f"--learning-rate when that is given, else {CLIPUP_MAX_SPEED}.",
    )
    top_directions: int | None = _opt(
        None,
        "ARS's b: update along the b directions whose better episode scored highest "
        "(V2-t); 0 = all (V2). " + default_help("top_directions"),
    )
    sigma_lr: float | None = _opt(
        None, "PGPE's learning rate of sigma. " + default_help("sigma_lr")
    )
    sigma_max_change: float | None = _opt(
        None,
        "PGPE's largest change of each sigma per generation, a fraction. "
        + default_help("sigma_max_change"),
    )
    init_radius: float | None = _opt(
        None,
        "PGPE's norm of the initial sigma vector (each sigma = radius / sqrt(parameters)). "
        f"Default: {PGPE_RADIUS:g} x --max-speed.",
    )
    noise_table_size: int = _opt(
        250_000_000, "Float32 values in the shared noise table (250M = 1 GB)."
    )

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            problem = field_type_problem(f.name, getattr(self, f.name))
            if problem:
                raise ConfigError(problem)
            if f.type.startswith("float") and getattr(self, f.name) is not None:
                object.__setattr__(self, f.name, float(getattr(self, f.name)))
        object.__setattr__(self, "hidden_dims", hidden_dims_tuple(self.hidden_dims))
        object.__setattr__(self, "env_kwargs", env_kwargs_items(self.env_kwargs))
        object.__setattr__(self, "logger", _loggers(self.logger))
        for problem in strategy_problems(self):
            raise ConfigError(problem)
        for name, value in strategy_values(self).items():
            object.__setattr__(self, name, value)
        for problem in option_problems(self):
            raise ConfigError(problem)

    @property
    def workers(self) -> int:
        """Number of local worker processes (the Ray backend counts its actors)."""
        return self.num_workers or os.cpu_count() or 1

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["hidden_dims"] = list(self.hidden_dims)
        d["env_kwargs"] = list(self.env_kwargs)
        return d

    def to_json(self) -> str:
        """Strict JSON (no Infinity): an infinite --target-return (no target) is null."""
        d = self.to_dict()
        if d["target_return"] == float("inf"):
            d["target_return"] = None
        return json.dumps(d, indent=2, sort_keys=False, allow_nan=False)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Config:
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ConfigError(f"unknown config key(s) {unknown}; remove them or fix the spelling")
        if "target_return" in d and d["target_return"] is None:  # to_json's no target
            d = {**d, "target_return": float("inf")}
        return cls(**d)


@functools.cache
def _field_types() -> dict[str, str]:
    """Option name -> its annotation (as text), computed once."""
    return {f.name: f.type for f in dataclasses.fields(Config)}


def field_type_problem(name: str, value: Any) -> str | None:
    """One line if ``value`` is not of option ``name``'s type; None if it is."""
    return type_problem(name, _field_types()[name], value)


def _loggers(value) -> tuple[str, ...]:
    """Tracker names from a tuple, a list (JSON) or one name; 'none' and repeats dropped."""
    names = [value] if isinstance(value, str) else list(value)
    for name in names:
        if name not in (*TRACKERS, "none"):
            raise ConfigError(f"--logger takes {', '.join(TRACKERS)} or none (got {name})")
    return tuple(dict.fromkeys(n for n in names if n != "none"))


# Options a resumed run may change: they do not alter what the saved state means.
# Results do not depend on the worker layout, so the layout may change too; nor on the
# periodic evaluations (they gather no statistics and are not in the training units).
RESUMABLE_OVERRIDES = (
    "max_timesteps", "max_generations", "num_workers", "envs_per_worker", "snapshot_freq",
    "keep_checkpoints", "eval_every", "eval_episodes", "target_return", "backend",
    "ray_address", "logger", "train_reward_until",
)  # fmt: skip
