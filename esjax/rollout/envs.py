"""The only module that knows Gymnasium / pybullet / MuJoCo ids and their quirks."""

from __future__ import annotations

import difflib
import importlib
import os
import re
import time
from typing import NamedTuple

import gymnasium as gym
import numpy as np

from esjax.errors import ConfigError
from esjax.option_values import env_kwargs_dict
from esjax.quiet import silenced_stdout
from esjax.rollout.jax_envs import is_jax_env, make_jax_env

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
    reward_terms: tuple[str, ...] = ()  # what --train-reward may weigh (esjax.rollout.train_reward)


def check_env_id(env_id: str) -> None:
    """Raise ConfigError for an unregistered id, suggesting close matches. ``module:Id``
    (Gymnasium's form for a user's env) imports ``module`` first, which registers ``Id``.
    ``brax/NAME`` (a JAX-native env, ``esjax.rollout.jax_envs``) is checked by creating it."""
    if is_jax_env(env_id):
        make_jax_env(env_id)
        return
    register_envs()
    if ":" in env_id:
        module, _, name = env_id.partition(":")
        try:
            importlib.import_module(module)
        except Exception as e:
            raise ConfigError(f"--env {env_id}: cannot import module {module!r} "
                              f"({_first_line(e)}): check its name and that it is on the "
                              "Python path (PYTHONPATH)") from None  # fmt: skip
        if name in gym.registry:
            return
        raise ConfigError(f"--env {env_id}: importing {module} registered no environment "
                          f"{name!r}: check the id it registers")  # fmt: skip
    if env_id in gym.registry:
        return
    close = difflib.get_close_matches(env_id, list(gym.registry), n=3, cutoff=0.6)
    hint = f"did you mean {', '.join(close)}?" if close else "see gymnasium.registry for ids"
    raise ConfigError(f"unknown environment id {env_id!r}: {hint}")


class ForgetContactsOnReset(gym.Wrapper):
    """Makes a pybullet episode independent of the episodes the env ran before it.

    pybullet's envs reset with ``restoreState``, which restores bodies and the contact
    manifolds it saved, but leaves every other manifold in place, with its contact points
    and their cached impulses (the solver's warm start). An episode that starts where the
    last one left a body touching the floor then steps differently (by ~1e-7 at first)
    from the same episode in a new env: about 1 episode in 100 on HopperBulletEnv-v0 under
    a fresh ES policy, which made results depend on which env slot ran which episode.

    Before each reset this moves every body 1 km apart and runs collision detection, which
    frees every manifold; the env's own reset then puts the bodies back. Cost: a few µs.
    """

    def reset(self, *, seed=None, options=None):
        client = getattr(self.env.unwrapped, "_p", None)
        if client is not None and getattr(self.env.unwrapped, "physicsClientId", -1) >= 0:
            poses = [(b, *client.getBasePositionAndOrientation(b))
                     for b in range(client.getNumBodies())]  # fmt: skip
            for b, pos, orn in poses:
                client.resetBasePositionAndOrientation(b, (pos[0], pos[1], 1000.0 * (b + 1)), orn)
            client.performCollisionDetection()  # every pair is now far apart: no manifolds
            for b, pos, orn in poses:
                client.resetBasePositionAndOrientation(b, pos, orn)
        return self.env.reset(seed=seed, options=options)


# Wrappers that only check what esjax's worker guarantees itself: reset before step
# (OrderEnforcing), the API's types (PassiveEnvChecker), the episode limit (TimeLimit: the
# worker ends an episode at the limit itself); ForgetContactsOnReset acts on reset only.
_STEP_THROUGH = (gym.wrappers.TimeLimit, gym.wrappers.OrderEnforcing,
                 gym.wrappers.PassiveEnvChecker, ForgetContactsOnReset)  # fmt: skip


def stepping_env(env: gym.Env) -> tuple[gym.Env, int | None]:
    """(the env whose ``step`` gives the same transitions as ``env.step`` once ``env`` is
    reset, below the wrappers that only check; the episode limit the caller must then
    enforce: truncated once an episode has that many steps, as TimeLimit does, or None).
    Measured: the wrappers cost 10-16 % of a step on HalfCheetah-v5 and
    InvertedPendulumBulletEnv-v0. Any other wrapper stays in the stepping env."""
    limit = None
    while isinstance(env, _STEP_THROUGH):
        if isinstance(env, gym.wrappers.TimeLimit):
            limit = env._max_episode_steps
        env = env.env
    return env, limit


MUJOCO_INSTALL = "pip install 'esjax[mujoco]' (or make setup, which installs it)"


def is_mujoco(env_id: str) -> bool:
    """Whether a registered id is one of Gymnasium's MuJoCo envs (HalfCheetah-v5, ...)."""
    entry = gym.spec(env_id).entry_point
    return isinstance(entry, str) and entry.startswith("gymnasium.envs.mujoco")


def _render_error(env_id: str, e: Exception) -> ConfigError:
    return ConfigError(
        f"cannot render {env_id} headless with MUJOCO_GL={os.environ['MUJOCO_GL']} "
        f"({_first_line(e)}): install EGL (apt install libegl1) or OSMesa (apt install "
        "libosmesa6, then MUJOCO_GL=osmesa), or leave out --video and unset MUJOCO_GL"
    )


def _first_line(e: Exception) -> str:
    lines = str(e).strip().splitlines()
    return (lines[0] if lines else type(e).__name__)[:200]


def registered_id(env_id: str) -> str:
    """The id Gymnasium's registry knows: ``Id`` of ``module:Id``, else ``env_id``."""
    return env_id.partition(":")[2] if ":" in env_id else env_id


def make_env(env_id: str, render_mode: str | None = None, kwargs: tuple[str, ...] = ()) -> gym.Env:
    """Create the environment quietly (``kwargs``: --env-kwarg items, passed to
    ``gymnasium.make``); ConfigError if its spaces are not Box/Box, or for a JAX-native
    id (those run in ``esjax.rollout.jax_pool``, never as a Gymnasium env).

    pybullet envs come wrapped in ``ForgetContactsOnReset``, so an episode's result
    depends on its reset seed and actions only, never on what the env ran before."""
    if is_jax_env(env_id):
        raise ConfigError(f"{env_id} is a JAX-native env: it runs in the trainer's process "
                          "(esjax.rollout.jax_pool), not as a Gymnasium env")  # fmt: skip
    check_env_id(env_id)  # module:Id imports module, which registers Id
    env_id = registered_id(env_id)
    mujoco = is_mujoco(env_id)
    if mujoco and render_mode is not None:
        # No display here: render through EGL (or what the user chose), never GLFW/X11.
        os.environ.setdefault("MUJOCO_GL", "egl")
        os.environ.setdefault("PYOPENGL_PLATFORM", os.environ["MUJOCO_GL"])
    with silenced_stdout():
        extra = env_kwargs_dict(kwargs)
        try:
            if render_mode is not None:  # an env without rendering need not take the word
                extra = {**extra, "render_mode": render_mode}
            env = gym.make(env_id, disable_env_checker=True, **extra)
        except TypeError as e:
            bad = re.search(r"unexpected keyword argument '(\w+)'", str(e))
            if extra and bad:
                raise ConfigError(
                    f"--env-kwarg {bad.group(1)}: {env_id} takes no such keyword: check its "
                    "constructor's arguments"
                ) from None
            raise ConfigError(f"could not create environment {env_id!r}: {e}") from e
        except Exception as e:  # a broken third-party env: report it in one line
            missing = isinstance(e, gym.error.DependencyNotInstalled) or (
                isinstance(e, ModuleNotFoundError) and e.name == "mujoco"
            )
            if mujoco and missing:
                raise ConfigError(f"{env_id} needs MuJoCo: {MUJOCO_INSTALL}") from None
            if mujoco and (render_mode is not None or "MUJOCO_GL" in os.environ):
                raise _render_error(env_id, e) from None  # mujoco sets up its GL on import
            raise ConfigError(f"could not create environment {env_id!r}: {e}") from e
        env.reset(seed=0)  # pybullet connects (and prints) on the first reset
        if hasattr(env.unwrapped, "_p"):  # a pybullet env
            env = ForgetContactsOnReset(env)
        if mujoco and render_mode is not None:
            try:
                env.render()
            except Exception as e:
                raise _render_error(env_id, e) from None
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


def torso_x(env: gym.Env, info: dict) -> float | None:
    """The x position (m) of the body's root, forward being +x, from ``env`` and the
    ``info`` of its last reset or step: a pybullet locomotor's torso, a MuJoCo v5 env's
    ``info["x_position"]`` (its root, qpos[0]); None for an env without one."""
    if "x_position" in info:
        return float(info["x_position"])
    xyz = getattr(getattr(env.unwrapped, "robot", None), "body_real_xyz", None)
    return None if xyz is None else float(xyz[0])


def step_seconds(env_id: str, steps: int = 20, kwargs: tuple[str, ...] = ()) -> float:
    """Seconds one ``step`` of ``env_id`` takes here: the median of 3 runs of ``steps``
    steps with zero actions after a reset (sizes --envs-per-worker auto)."""
    env = make_env(env_id, kwargs=kwargs)
    try:
        env.reset(seed=0)
        zero = np.zeros(env.action_space.shape, env.action_space.dtype)
        runs = []
        for _ in range(3):
            t0 = time.perf_counter()
            for _ in range(steps):
                _, _, terminated, truncated, _ = env.step(zero)
                if terminated or truncated:
                    env.reset(seed=0)
            runs.append((time.perf_counter() - t0) / steps)
        return float(np.median(runs))
    finally:
        env.close()


def env_info(env_id: str, kwargs: tuple[str, ...] = ()) -> EnvInfo:
    """Create, describe and close an environment (its --train-reward terms included)."""
    from esjax.rollout.train_reward import ANY_ENV_TERMS, env_reward_terms

    if is_jax_env(env_id):
        jenv = make_jax_env(env_id, kwargs)
        ac_dim = int(jenv.env.action_size)
        return EnvInfo(env_id, int(jenv.env.observation_size), ac_dim, (-1.0,) * ac_dim,
                       (1.0,) * ac_dim, jenv.episode_length, None,
                       (*jenv.reward_terms, *ANY_ENV_TERMS))  # fmt: skip

    env = make_env(env_id, kwargs=kwargs)
    try:
        return describe_env(env)._replace(reward_terms=env_reward_terms(env))
    finally:
        env.close()
