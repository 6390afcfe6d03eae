"""A tiny JAX-native env with Brax's duck type, for tests: a point on a line pushed toward
x = 1; it falls off (done) past |x| > 2. Compiles in about a second."""

from typing import NamedTuple

import jax
import jax.numpy as jnp


class PointState(NamedTuple):
    obs: jax.Array  # (2,): x, v
    reward: jax.Array
    done: jax.Array
    metrics: dict


class PointEnv:
    observation_size = 2
    action_size = 1

    def __init__(self, gain: float = 0.1):
        self.gain = gain

    def reset(self, key) -> PointState:
        x = jax.random.uniform(key, (), minval=-0.1, maxval=0.1)
        zero = jnp.float32(0.0)
        return PointState(jnp.stack([x, zero]), zero, zero,
                          {"reward_dist": zero, "reward_ctrl": zero})  # fmt: skip

    def step(self, state: PointState, action) -> PointState:
        x, v = state.obs
        v = v + self.gain * action[0]
        x = x + self.gain * v
        dist = -jnp.abs(x - 1.0)
        ctrl = -0.01 * jnp.square(action[0])
        done = jnp.where(jnp.abs(x) > 2.0, 1.0, 0.0)
        return PointState(jnp.stack([x, v]), dist + ctrl + 1.0, done,
                          {"reward_dist": dist, "reward_ctrl": ctrl})  # fmt: skip


def make_point(name: str, kwargs: dict) -> PointEnv:
    if name != "line":
        from esjax.errors import ConfigError

        raise ConfigError(f"unknown point env {name!r}")
    return PointEnv(**kwargs)
