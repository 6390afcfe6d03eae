"""Environment edge: an episode depends on its seed and actions only."""

import numpy as np
import pytest

from esjax.envs import make_env


def zero_action_episode(env, seed: int) -> np.ndarray:
    """Observations (T + 1, ob_dim) of one episode with zero actions."""
    ob, _ = env.reset(seed=seed)
    obs, action = [ob], np.zeros(env.action_space.shape, np.float32)
    while True:
        ob, _, terminated, truncated, _ = env.step(action)
        obs.append(ob)
        if terminated or truncated:
            return np.array(obs)


@pytest.mark.parametrize("env_id", ["HopperBulletEnv-v0", "InvertedPendulumBulletEnv-v0"])
def test_an_episode_is_the_same_in_a_new_env_and_after_other_episodes(env_id):
    """ES runs the two mirrored episodes of a unit with one reset seed, often in the same
    env one after the other. pybullet kept the first one's contact manifolds (and their
    warm-start impulses) across the reset, so the second could step differently from the
    same episode in a new env (on Hopper: seeds 22 and 26 of these 30)."""
    used = make_env(env_id)
    for seed in range(30):
        zero_action_episode(used, seed)  # the same start, so its last contacts fit the next
        again = zero_action_episode(used, seed)
        new = make_env(env_id)
        np.testing.assert_array_equal(again, zero_action_episode(new, seed))
        new.close()
    used.close()
