"""The one source of truth for a run's options: a frozen dataclass, validated on creation.

Every field becomes a CLI flag in ``esjax.train`` (kebab-case; booleans as --x/--no-x),
with the field's ``help`` as its help text.
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from esjax.core.fitness import RETURN_PROC_MODES
from esjax.optim import OPTIMIZERS
from esjax.policy import NONLINEARITIES


class ConfigError(ValueError):
    """A user-caused configuration problem; its message is one line naming problem and fix."""


def _opt(default, help: str, **meta):
    return field(default=default, metadata={"help": help, **meta})


def envs_per_worker_arg(text: str) -> int:
    """The CLI's --envs-per-worker: 'auto' is 0; otherwise a count >= 1."""
    if text == "auto":
        return 0
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 1:
        raise ValueError(f"--envs-per-worker must be >= 1, or auto (got {text})")
    return value


@dataclass(frozen=True)
class Config:
    """Options of a training run (semantics of the OpenAI ES reference)."""

    env: str = _opt("AntBulletEnv-v0", "Gymnasium environment id (Box observations and actions).")
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
        "Where the workers run: local (processes on this machine) or ray (actors on a Ray "
        "cluster; needs esjax[ray]). Results are the same bit for bit.",
        choices=("local", "ray"),
    )
    ray_address: str = _opt(
        "",
        "With --backend ray: the cluster to join (auto, or the head's HOST:PORT); empty "
        "starts a private Ray instance on this machine.",
    )
    envs_per_worker: int = _opt(
        0,
        "Environments each worker steps in lockstep (one policy call for all); 'auto' "
        "picks one wave of a generation's episodes per worker, capped so the slots' "
        "perturbed weights stay cache-sized (esjax.worker.auto_envs_per_worker). Results "
        "do not depend on it.",
    )
    learning_rate: float = _opt(0.01, "Step size of the optimizer (or of plain gradient ascent).")
    noise_stdev: float = _opt(0.02, "Standard deviation sigma of the parameter perturbations.")
    l2coeff: float = _opt(0.005, "L2 weight-decay coefficient (pull of theta toward zero).")
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
    return_proc_mode: str = _opt(
        "centered_rank", "Fitness shaping of returns.", choices=RETURN_PROC_MODES
    )
    reward_shift: float = _opt(
        0.0,
        "Subtract this per step from training returns before fitness shaping (ARS's "
        "'shift', EvoTorch's decrease_rewards_by: removes a survival bonus that makes "
        "standing still a local optimum). Logged returns and evaluations are unshifted.",
    )
    mirrored_sampling: bool = _opt(True, "Evaluate theta + sigma*eps and theta - sigma*eps.")
    fitness_shaping: bool = _opt(True, "Shape returns with --return-proc-mode (else raw).")
    weight_decay: bool = _opt(True, "Apply L2 weight decay with --l2coeff.")
    discretize_actions: bool = _opt(False, "Pick each action from --ac-bins uniform bins.")
    gradient_optimizer: bool = _opt(True, "Use --optimizer; off means plain gradient ascent.")
    observation_normalization: bool = _opt(True, "Normalize observations by running stats.")
    divide_by_stdev: bool = _opt(False, "Divide the gradient estimate by --noise-stdev.")
    hidden_dims: tuple[int, ...] = _opt(
        (64, 64),
        "Hidden layer sizes of the MLP policy (64 64: the ES paper's MuJoCo network; its "
        "256 256 Humanoid network suits populations of thousands of episodes).",
    )
    nonlin: str = _opt("tanh", "Hidden-layer nonlinearity.", choices=tuple(NONLINEARITIES))
    ac_noise_std: float = _opt(0.01, "Gaussian action noise in training episodes (not eval).")
    ac_bins: int = _opt(5, "Bins per action dimension when --discretize-actions is on.")
    optimizer: str = _opt("adam", "Gradient optimizer (optax).", choices=OPTIMIZERS)
    momentum: float = _opt(0.9, "Momentum of the sgd optimizer.")
    noise_table_size: int = _opt(
        250_000_000, "Float32 values in the shared noise table (250M = 1 GB)."
    )

    def __post_init__(self) -> None:
        object.__setattr__(self, "hidden_dims", tuple(int(h) for h in self.hidden_dims))
        for problem in _problems(self):
            raise ConfigError(problem)

    @property
    def workers(self) -> int:
        """Number of local worker processes (the Ray backend counts its actors)."""
        return self.num_workers or os.cpu_count() or 1

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["hidden_dims"] = list(self.hidden_dims)
        return d

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=False)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Config:
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ConfigError(f"unknown config key(s) {unknown}; remove them or fix the spelling")
        return cls(**d)


def _problems(c: Config):
    """Yield one-line messages for every invalid option (first one is raised)."""
    positive_ints = ("population_size", "timesteps_per_gen", "noise_table_size")
    for name in positive_ints:
        if getattr(c, name) < 1:
            yield f"--{_flag(name)} must be >= 1 (got {getattr(c, name)})"
    if c.envs_per_worker < 0:
        yield f"--envs-per-worker must be >= 1, or auto (got {c.envs_per_worker})"
    for name in ("max_timesteps", "max_generations", "num_workers", "snapshot_freq"):
        if getattr(c, name) < 0:
            yield f"--{_flag(name)} must be >= 0 (got {getattr(c, name)})"
    if c.backend not in ("local", "ray"):
        yield f"--backend must be local or ray (got {c.backend})"
    if c.ray_address and c.backend != "ray":
        yield "--ray-address needs --backend ray"
    if c.eval_every < 0:
        yield f"--eval-every must be >= 0 (got {c.eval_every}); 0 turns periodic evaluation off"
    if not abs(c.reward_shift) < float("inf"):  # NaN or infinite
        yield f"--reward-shift must be a finite number (got {c.reward_shift})"
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
            yield f"--{_flag(name)} is a probability: give a value in [0, 1] (got {v})"
    if c.eval_prob >= 1.0:
        yield "--eval-prob 1 leaves no training episodes: give a value below 1"
    if not c.noise_stdev > 0:
        yield f"--noise-stdev must be > 0 (got {c.noise_stdev})"
    if not c.learning_rate > 0:
        yield f"--learning-rate must be > 0 (got {c.learning_rate})"
    if c.l2coeff < 0:
        yield f"--l2coeff must be >= 0 (got {c.l2coeff})"
    if c.ac_noise_std < 0:
        yield f"--ac-noise-std must be >= 0 (got {c.ac_noise_std})"
    if not 0.0 <= c.momentum < 1.0:
        yield f"--momentum must be in [0, 1) (got {c.momentum})"
    if not c.hidden_dims or any(h < 1 for h in c.hidden_dims):
        yield f"--hidden-dims needs one or more positive sizes (got {list(c.hidden_dims)})"
    if c.discretize_actions and c.ac_bins < 2:
        yield f"--ac-bins must be >= 2 with --discretize-actions (got {c.ac_bins})"
    if c.return_proc_mode not in RETURN_PROC_MODES:
        yield f"--return-proc-mode must be one of {', '.join(RETURN_PROC_MODES)}"
    if c.nonlin not in NONLINEARITIES:
        yield f"--nonlin must be one of {', '.join(NONLINEARITIES)}"
    if c.optimizer not in OPTIMIZERS:
        yield f"--optimizer must be one of {', '.join(OPTIMIZERS)}"
    if c.return_proc_mode != "centered_rank" and not c.fitness_shaping:
        yield (
            f"--return-proc-mode {c.return_proc_mode} has no effect with --no-fitness-shaping: "
            "turn fitness shaping on or leave the mode at centered_rank"
        )


def load_run_config(run_dir: Path) -> Config:
    """The Config saved in ``run_dir/config.json``; ConfigError (one line) otherwise."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise ConfigError(f"{run_dir}: no such run directory")
    path = run_dir / "config.json"
    if not path.is_file():
        raise ConfigError(f"{run_dir} has no config.json, so it is not an esjax run directory")
    try:
        return Config.from_dict(json.loads(path.read_text()))
    except json.JSONDecodeError as e:
        raise ConfigError(
            f"{path} is not valid JSON ({e.msg}, line {e.lineno}): restore it"
        ) from None
    except (TypeError, ConfigError) as e:
        raise ConfigError(f"{path} is not a valid esjax config: {e}") from None


# Options a resumed run may change: they do not alter what the saved state means.
# Results do not depend on the worker layout, so the layout may change too; nor on the
# periodic evaluations (they gather no statistics and are not in the training units).
RESUMABLE_OVERRIDES = (
    "max_timesteps", "max_generations", "num_workers", "envs_per_worker", "snapshot_freq",
    "keep_checkpoints", "eval_every", "eval_episodes", "target_return", "backend",
    "ray_address",
)  # fmt: skip


def _flag(name: str) -> str:
    return name.replace("_", "-")
