"""What option values may be, and which values and combinations are invalid: the
one-line problems ``esjax.config.Config`` raises on creation."""

from __future__ import annotations

from typing import TYPE_CHECKING

from esjax.core.policy import OUTPUT_INIT_STD
from esjax.errors import ConfigError
from esjax.option_values import flag, parse_train_reward

if TYPE_CHECKING:
    from esjax.config import Config

# Choice lists, as data (tests/test_config_cli.py checks them against the implementations:
# esjax.core.fitness, esjax.core.optim, esjax.core.policy, esjax.run.trackers).
RETURN_PROC_MODES = ("centered_rank", "sign", "centered_sign_rank")
OPTIMIZERS = ("adam", "sgd", "clipup")
NONLINEARITIES = ("tanh", "relu", "lrelu", "elu")
BACKENDS = ("local", "ray", "inline")
TRACKERS = ("tensorboard", "wandb")  # esjax.run.trackers


def option_problems(c: Config):
    """Yield one-line messages for every invalid option (first one is raised)."""
    positive_ints = ("population_size", "timesteps_per_gen", "noise_table_size")
    for name in positive_ints:
        if getattr(c, name) < 1:
            yield f"--{flag(name)} must be >= 1 (got {getattr(c, name)})"
    if c.envs_per_worker < 0:
        yield f"--envs-per-worker must be >= 1, or auto (got {c.envs_per_worker})"
    for name in ("max_timesteps", "max_generations", "num_workers", "snapshot_freq"):
        if getattr(c, name) < 0:
            yield f"--{flag(name)} must be >= 0 (got {getattr(c, name)})"
    if c.backend not in BACKENDS:
        yield f"--backend must be one of {', '.join(BACKENDS)} (got {c.backend})"
    if c.ray_address and c.backend != "ray":
        yield "--ray-address needs --backend ray"
    if c.eval_every < 0:
        yield f"--eval-every must be >= 0 (got {c.eval_every}); 0 turns periodic evaluation off"
    if not abs(c.reward_shift) < float("inf"):  # NaN or infinite
        yield f"--reward-shift must be a finite number (got {c.reward_shift})"
    if c.train_reward_until < 0:
        yield f"--train-reward-until must be >= 0 (got {c.train_reward_until})"
    if c.train_reward_until and not (c.train_reward or c.train_end_on_fall):
        yield (
            "--train-reward-until needs --train-reward or --train-end-on-fall (what "
            "training episodes use until then)"
        )
    try:
        parse_train_reward(c.train_reward)
    except ConfigError as e:
        yield str(e)
    if not 0 < c.obs_std_floor < float("inf"):
        yield f"--obs-std-floor must be a positive number (got {c.obs_std_floor})"
    if not 0 < c.output_init_std < float("inf"):
        yield f"--output-init-std must be a positive number (got {c.output_init_std})"
    elif not c.hidden_dims and c.output_init_std != OUTPUT_INIT_STD:
        yield (
            "--output-init-std needs hidden layers: a linear policy (--hidden-dims "
            "linear) starts at zero"
        )
    if c.target_return != c.target_return:  # NaN
        yield "--target-return must be a number (or inf for no target)"
    if c.eval_episodes < 1:
        yield f"--eval-episodes must be >= 1 (got {c.eval_episodes})"
    if c.keep_checkpoints < 1:
        yield f"--keep-checkpoints must be >= 1 (got {c.keep_checkpoints})"
    if c.max_timesteps == 0 and c.max_generations == 0:
        yield "no budget: give --max-timesteps or --max-generations a positive value"
    for name in ("eval_prob", "calc_obstat_prob"):
        v = getattr(c, name)
        if not 0.0 <= v <= 1.0:
            yield f"--{flag(name)} is a probability: give a value in [0, 1] (got {v})"
    if c.eval_prob >= 1.0:
        yield "--eval-prob 1 leaves no training episodes: give a value below 1"
    yield from _value_problems(c)


def _value_problems(c: Config):
    """The rest of ``option_problems``: numbers in range, choices, combinations."""
    positive = ("noise_stdev", "learning_rate", "max_speed", "init_radius", "sigma_lr")
    for name in positive:
        v = getattr(c, name)
        if v is not None and not 0 < v < float("inf"):
            yield f"--{flag(name)} must be > 0 (got {v})"
    if not 0 <= c.l2coeff < float("inf"):
        yield f"--l2coeff must be >= 0 (got {c.l2coeff})"
    if not 0 <= c.ac_noise_std < float("inf"):
        yield f"--ac-noise-std must be a finite number >= 0 (got {c.ac_noise_std})"
    if not 0.0 <= c.momentum < 1.0:
        yield f"--momentum must be in [0, 1) (got {c.momentum})"
    if c.sigma_max_change is not None and not 0 < c.sigma_max_change < 1:
        yield f"--sigma-max-change is a fraction: give a value in (0, 1) (got {c.sigma_max_change})"
    if c.top_directions is not None and c.top_directions < 0:
        yield f"--top-directions must be >= 0 (got {c.top_directions}); 0 keeps every direction"
    if c.top_directions and c.top_directions > c.population_size // 2:
        yield (f"--top-directions {c.top_directions} is more than the "
               f"{c.population_size // 2} directions of --population-size {c.population_size}:"
               " lower it or raise --population-size")  # fmt: skip
    if any(h < 1 for h in c.hidden_dims):
        yield f"--hidden-dims needs positive sizes, or linear (got {list(c.hidden_dims)})"
    if c.discretize_actions and c.ac_bins < 2:
        yield f"--ac-bins must be >= 2 with --discretize-actions (got {c.ac_bins})"
    if c.return_proc_mode not in (*RETURN_PROC_MODES, None):
        yield f"--return-proc-mode must be one of {', '.join(RETURN_PROC_MODES)}"
    if c.nonlin not in NONLINEARITIES:
        yield f"--nonlin must be one of {', '.join(NONLINEARITIES)}"
    if c.optimizer not in OPTIMIZERS:
        yield f"--optimizer must be one of {', '.join(OPTIMIZERS)}"
    if c.return_proc_mode not in ("centered_rank", None) and c.fitness_shaping is False:
        yield (
            f"--return-proc-mode {c.return_proc_mode} has no effect with --no-fitness-shaping: "
            "turn fitness shaping on or leave the mode at centered_rank"
        )
