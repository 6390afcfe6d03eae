"""The only module that knows Gymnasium / pybullet ids and their quirks."""

from __future__ import annotations

import contextlib
import ctypes
import difflib
import os
import sys
from typing import NamedTuple

import gymnasium as gym
import numpy as np

from esjax.config import ConfigError

_libc = ctypes.CDLL(None)


@contextlib.contextmanager
def silenced_stdout():
    """Send file descriptors 1 and 2 to /dev/null while pybullet's C code prints
    (``pybullet build time``, ``argv[0]=``); Python exceptions still propagate."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = [os.dup(1), os.dup(2)]
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 1)
        os.dup2(devnull, 2)
        yield
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        _libc.fflush(None)  # C stdio buffers too, or the text reappears later
        for fd, old in zip((1, 2), saved):
            os.dup2(old, fd)
            os.close(old)
        os.close(devnull)


_registered = False


def register_envs() -> None:
    """Register the pybullet ids with Gymnasium (idempotent, silent)."""
    global _registered
    if not _registered:
        with silenced_stdout():
            import pybullet_envs_gymnasium  # noqa: F401  (registers *BulletEnv-v0)
        _registered = True


class EnvInfo(NamedTuple):
    """Spaces of an environment: dims, action bounds (tuples, hashable), episode limit."""

    env_id: str
    ob_dim: int
    ac_dim: int
    ac_low: tuple[float, ...]
    ac_high: tuple[float, ...]
    max_episode_steps: int | None
    reward_threshold: float | None


def check_env_id(env_id: str) -> None:
    """Raise ConfigError for an unregistered id, suggesting close matches."""
    register_envs()
    if env_id in gym.registry:
        return
    close = difflib.get_close_matches(env_id, list(gym.registry), n=3, cutoff=0.6)
    hint = f"did you mean {', '.join(close)}?" if close else "see gymnasium.registry for ids"
    raise ConfigError(f"unknown environment id {env_id!r}: {hint}")


def make_env(env_id: str) -> gym.Env:
    """Create the environment quietly; ConfigError if its spaces are not Box/Box."""
    check_env_id(env_id)
    with silenced_stdout():
        try:
            env = gym.make(env_id, disable_env_checker=True)
        except Exception as e:  # a broken third-party env: report it in one line
            raise ConfigError(f"could not create environment {env_id!r}: {e}") from e
        env.reset(seed=0)  # pybullet connects (and prints) on the first reset
    if not isinstance(env.observation_space, gym.spaces.Box):
        raise ConfigError(
            f"{env_id} has a {type(env.observation_space).__name__} observation space; "
            "esjax supports Box observations only: pick another environment"
        )
    if not isinstance(env.action_space, gym.spaces.Box):
        raise ConfigError(
            f"{env_id} has a {type(env.action_space).__name__} action space: not supported, "
            "esjax needs a continuous (Box) action space"
        )
    return env


def describe_env(env: gym.Env) -> EnvInfo:
    """EnvInfo of a created environment (flattened Box shapes)."""
    spec = env.spec
    low = np.broadcast_to(env.action_space.low, env.action_space.shape).ravel()
    high = np.broadcast_to(env.action_space.high, env.action_space.shape).ravel()
    return EnvInfo(
        env_id=spec.id if spec else "?",
        ob_dim=int(np.prod(env.observation_space.shape)),
        ac_dim=int(np.prod(env.action_space.shape)),
        ac_low=tuple(float(x) for x in low),
        ac_high=tuple(float(x) for x in high),
        max_episode_steps=spec.max_episode_steps if spec else None,
        reward_threshold=spec.reward_threshold if spec else None,
    )


def env_info(env_id: str) -> EnvInfo:
    """Create, describe and close an environment."""
    env = make_env(env_id)
    try:
        return describe_env(env)
    finally:
        env.close()
