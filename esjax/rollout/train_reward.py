"""A training reward that is not the evaluation reward (``--train-reward``).

Training episodes can be scored by a declared weighted sum of the env's own reward terms
instead of its stock reward; evaluation episodes, the best checkpoint, ``--target-return``,
``evaluate`` and every results file always use the stock reward, and the workers report
both returns of each episode (log.csv: GenRewMean is the stock return of the training
episodes, GenTrainRewMean what the strategy ranked).

Spelling: ``TERM=WEIGHT`` pairs separated by commas, e.g. ``progress=1,joints_at_limit=1,
action_sq=-0.01,constant=0.01``: the training reward of a step is exactly that sum (a term
not named weighs 0). Terms:

- pybullet locomotors (Ant, HalfCheetah, Hopper, Walker2D, Humanoid ``BulletEnv-v0``): the
  env's ``unwrapped.rewards`` after each step: ``alive``, ``progress``, ``electricity``,
  ``joints_at_limit``, ``feet_collision`` (their stock reward is the sum with weight 1).
- Gymnasium's MuJoCo v5 envs: the reward parts in ``info`` (``reward_forward`` is
  ``forward``; also ``ctrl``, ``survive``, ``contact`` where the env has them).
- Any env: ``constant`` (added per step) and ``action_sq`` (the mean over action
  dimensions of the squared action the env was stepped with).

Episodes end as in the stock env, unless ``--train-end-on-fall`` ends training episodes at
the first step whose alive term is negative (pybullet locomotors; ``fell``).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from esjax.errors import ConfigError
from esjax.option_values import TrainReward, format_train_reward, parse_train_reward  # noqa: F401

PYBULLET_TERMS = ("alive", "progress", "electricity", "joints_at_limit", "feet_collision")
ANY_ENV_TERMS = ("constant", "action_sq")
INFO_PREFIX = "reward_"
ALIVE = PYBULLET_TERMS.index("alive")


def _is_pybullet_walker(env) -> bool:
    """Whether ``env`` is one of pybullet's locomotors (``WalkerBaseBulletEnv``), whose
    ``unwrapped.rewards`` holds PYBULLET_TERMS after each step."""
    return any(c.__name__ == "WalkerBaseBulletEnv" and c.__module__.startswith("pybullet_envs")
               for c in type(env.unwrapped).__mro__)  # fmt: skip


def env_reward_terms(env) -> tuple[str, ...]:
    """The terms ``env`` (created, not reset) offers to ``--train-reward``. Resets it and
    takes one zero-action step to read MuJoCo's ``info`` parts."""
    env.reset(seed=0)
    zero = np.zeros(env.action_space.shape, env.action_space.dtype)
    _, _, _, _, info = env.step(zero)
    if _is_pybullet_walker(env):
        own: tuple[str, ...] = PYBULLET_TERMS
    else:
        own = tuple(k[len(INFO_PREFIX) :] for k in info if k.startswith(INFO_PREFIX))
    return (*own, *ANY_ENV_TERMS)


def check_train_reward(reward: TrainReward, env_id: str, terms: tuple[str, ...]) -> None:
    """ConfigError (one line) for a term ``env_id`` does not have (``terms``: its own)."""
    for name, _ in reward:
        if name not in terms:
            own = [t for t in terms if t not in ANY_ENV_TERMS]
            has = (f"its terms are {', '.join(own)}" if own else
                   "it has no reward terms of its own")  # fmt: skip
            raise ConfigError(
                f"--train-reward: {env_id} has no reward term {name!r} ({has}; any env "
                f"also takes {', '.join(ANY_ENV_TERMS)})"
            )


def fell(env) -> bool:
    """Whether the step a pybullet locomotor ``env`` just took has a negative alive term:
    a fall (--train-end-on-fall; ``check_end_on_fall`` admits no other env)."""
    return env.unwrapped.rewards[ALIVE] < 0


def check_end_on_fall(env_id: str, terms: tuple[str, ...]) -> None:
    """ConfigError (one line) unless ``env_id`` (its reward ``terms``) is a pybullet
    locomotor, whose alive term says when it fell."""
    if not set(PYBULLET_TERMS) <= set(terms):
        raise ConfigError(
            f"--train-end-on-fall: {env_id} has no alive term to end a training episode on "
            "(pybullet locomotors only; MuJoCo v5 envs end unhealthy episodes themselves, "
            "--env-kwarg terminate_when_unhealthy=true)"
        )


def step_reward_fn(reward: TrainReward, env) -> Callable[[dict, np.ndarray], float] | None:
    """``fn(info, action)`` -> the training reward of the step ``env`` (its stepping
    env, below the checking wrappers) just took with ``action``; None for () (the stock
    reward: the caller uses the env's own). Added in this order: ``constant``, the env's
    terms as ``reward`` names them, ``action_sq``."""
    if not reward:
        return None
    unwrapped = env.unwrapped
    constant = sum(w for name, w in reward if name == "constant")
    action_sq = sum(w for name, w in reward if name == "action_sq")
    own = [(name, w) for name, w in reward if name not in ANY_ENV_TERMS]
    if _is_pybullet_walker(env):  # the terms the env keeps after each step
        index = {t: i for i, t in enumerate(PYBULLET_TERMS)}
        picks = [(index[name], w) for name, w in own]

        def terms_of(info):
            return unwrapped.rewards

    else:  # MuJoCo v5: the reward parts in info
        picks = [(INFO_PREFIX + name, w) for name, w in own]

        def terms_of(info):
            return info

    def fn(info: dict, action: np.ndarray) -> float:
        terms = terms_of(info)
        total = constant
        for key, w in picks:
            total += w * float(terms[key])
        if action_sq:
            total += action_sq * float(np.mean(np.square(action, dtype=np.float64)))
        return total

    return fn
