"""JAX-native environment ids: ``brax/NAME`` is Brax's env ``NAME`` on MuJoCo's JAX physics
(MJX). The only module that knows Brax; ``register_jax_envs`` adds a family of one's own.

A JAX-native env is pure: ``reset(key) -> state``, ``step(state, action) -> state`` with
``state.obs``, ``state.reward``, ``state.done`` (0/1 float) and ``state.metrics``, unbatched,
so a whole generation runs as one jitted function (``esjax.rollout.jax_rollout``). Brax's
envs have no episode limit of their own: esjax stops an episode after ``episode_length``
steps (an --env-kwarg, default 1000); every other --env-kwarg goes to the env's
constructor (``ctrl_cost_weight=0.1``, ...).
"""

from __future__ import annotations

import functools
import re
from typing import Any, NamedTuple

from esjax.errors import ConfigError
from esjax.option_values import env_kwargs_dict
from esjax.quiet import silenced_stdout

PREFIX = "brax/"
INSTALL = "pip install 'esjax[jax-envs]' (or make setup, which installs it)"
EPISODE_LENGTH = 1000  # steps, the default --env-kwarg episode_length
# Brax envs that run on MJX (the MuJoCo-physics backend; Brax's own pipelines are frozen).
BRAX_ENVS = ("ant", "halfcheetah", "hopper", "humanoid", "humanoidstandup", "inverted_pendulum",
             "inverted_double_pendulum", "pusher", "reacher", "walker2d")  # fmt: skip


def _make_brax(name: str, kwargs: dict):
    """Brax's env ``name`` on MJX; ConfigError for a name Brax does not run on MJX."""
    if name not in BRAX_ENVS:
        import difflib

        close = difflib.get_close_matches(name, BRAX_ENVS, n=3)
        hint = (f"did you mean {', '.join(PREFIX + c for c in close)}?" if close
                else f"one of {', '.join(PREFIX + n for n in BRAX_ENVS)}")  # fmt: skip
        raise ConfigError(f"unknown JAX-native environment {PREFIX + name!r}: {hint}")
    return _brax().get_environment(name, backend="mjx", **kwargs)


# prefix -> maker(name after the prefix, constructor keywords) -> env
_FAMILIES: dict = {PREFIX: _make_brax}


def register_jax_envs(prefix: str, maker) -> None:
    """Make ``PREFIX + NAME`` ids mean ``maker(NAME, kwargs)``: a pure env with Brax's
    duck type (``reset(key)``, ``step(state, action)``, ``state.obs / reward / done /
    metrics``, ``observation_size``, ``action_size``; actions in [-1, 1]). The id then
    trains and evaluates like ``brax/NAME`` in this process."""
    if not prefix.endswith("/"):
        raise ValueError(f"a JAX env prefix ends with '/' (got {prefix!r})")
    _FAMILIES[prefix] = maker
    make_jax_env.cache_clear()


def is_jax_env(env_id: str) -> bool:
    """Whether ``env_id`` names a JAX-native env (``brax/NAME`` or a registered family)."""
    return any(env_id.startswith(p) for p in _FAMILIES)


class JaxEnv(NamedTuple):
    """A created JAX-native env: the env object and how esjax runs it."""

    env_id: str
    env: Any  # reset(key), step(state, action), observation_size, action_size
    episode_length: int  # steps before esjax ends an episode

    @property
    def reward_terms(self) -> tuple[str, ...]:
        """The env's reward parts (``state.metrics['reward_*']``) --train-reward may weigh."""
        return _reward_terms(self.env_id, self.env)


def enable_compilation_cache() -> None:
    """Keep compiled programs on disk (``$XDG_CACHE_HOME/esjax/xla``, unless JAX was
    given a cache folder): a JAX-native env's rollout compiles for tens of seconds on
    CPU, a cached one loads in about a second (a resume, a second seed). Call it before
    anything compiles."""
    import os
    from pathlib import Path

    import jax

    if jax.config.jax_compilation_cache_dir:
        return
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    jax.config.update("jax_compilation_cache_dir", str(base / "esjax" / "xla"))


def _brax():
    try:
        with silenced_stdout():  # brax prints why it cannot use warp (a GPU-only backend)
            import brax.envs
    except ModuleNotFoundError as e:
        raise ConfigError(f"JAX-native envs need Brax (missing {e.name}): {INSTALL}") from None
    return brax.envs


@functools.lru_cache(maxsize=16)
def make_jax_env(env_id: str, kwargs: tuple[str, ...] = ()) -> JaxEnv:
    """The env of ``brax/NAME`` (``kwargs``: --env-kwarg items); ConfigError (one line)
    for an unknown name or a keyword the env does not take. Cached: envs are immutable."""
    prefix = next(p for p in _FAMILIES if env_id.startswith(p))
    extra = env_kwargs_dict(kwargs)
    length = extra.pop("episode_length", EPISODE_LENGTH)
    if not isinstance(length, int) or isinstance(length, bool) or length < 1:
        raise ConfigError(f"--env-kwarg episode_length must be an integer >= 1 (got {length!r})")
    try:
        with silenced_stdout():
            env = _FAMILIES[prefix](env_id[len(prefix) :], extra)
    except TypeError as e:
        bad = re.search(r"unexpected keyword argument '(\w+)'", str(e))
        if bad:
            raise ConfigError(f"--env-kwarg {bad.group(1)}: {env_id} takes no such keyword: "
                              "check its constructor's arguments") from None  # fmt: skip
        raise ConfigError(f"could not create environment {env_id!r}: {e}") from e
    return JaxEnv(env_id, env, length)


@functools.lru_cache(maxsize=16)
def _reward_terms(env_id: str, env) -> tuple[str, ...]:
    import jax

    state = jax.eval_shape(env.reset, jax.ShapeDtypeStruct((2,), "uint32"))
    return tuple(sorted(k[len("reward_") :] for k in state.metrics if k.startswith("reward_")))
