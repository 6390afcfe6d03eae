"""A tiny continuous-control env registered on import: reach a target on a line."""

import gymnasium as gym
import numpy as np


class Toy(gym.Env):
    def __init__(self, target: float = 0.5, horizon: int = 50):
        self.observation_space = gym.spaces.Box(-10, 10, (2,), np.float32)
        self.action_space = gym.spaces.Box(-1, 1, (1,), np.float32)
        self.target, self.horizon = target, horizon

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.x, self.t = float(self.np_random.uniform(-1, 1)), 0
        return np.array([self.x, self.target], np.float32), {}

    def step(self, action):
        self.x += 0.1 * float(np.clip(action[0], -1, 1))
        self.t += 1
        reward = -abs(self.x - self.target)
        obs = np.array([self.x, self.target], np.float32)
        return obs, reward, False, self.t >= self.horizon, {}


gym.register("Toy-v0", entry_point=Toy, max_episode_steps=50)
